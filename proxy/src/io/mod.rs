//! Transport adapters, apart from the layers that use them: the server stream type (TLS or
//! plain) and the read-ahead buffer that lets rustls read the socket in large pieces.

pub(crate) mod readahead;
mod server_stream;

pub(crate) use server_stream::ServerStream;
