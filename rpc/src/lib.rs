//! # efs-rpc: the bytes of an EFS / S3 Files connection
//!
//! Everything here is pure data: no sockets, no runtime. It knows
//!
//! * [`record`]: RFC 5531 record marking, as a `tokio_util::codec` decoder/encoder with a
//!   bounded record size, and a single [`RecordMark`] read;
//! * [`message`]: ONC RPC v2 call and reply headers, AUTH_NONE and AUTH_SYS;
//! * [`peek`]: what a message is without decoding all of it: the [`peek_header`] (xid and
//!   message type) a forwarder routes by, reply sniffing, the results of an accepted reply;
//! * [`awsfile`]: the AWSFILE program (400123) and its `bind_client_to_partition` procedure;
//! * [`nfs4`]: the NFS program numbers, the NULL call, and whether an NFSv4.1 COMPOUND call
//!   starts with SEQUENCE (its first operation number, nothing more);
//! * [`xdr`]: the XDR primitives the above are built on (`xdr-codec`'s `Pack`/`Unpack` traits,
//!   with bounded readers for untrusted input).
//!
//! With the `test-util` feature, `test_util` frames records and builds calls by hand for the
//! tests and fuzz targets of this workspace, so they do not each write record marks.
//!
//! Every decoder takes untrusted bytes: errors are values, never panics, and no allocation is
//! larger than the data present or the configured limit.

#![warn(missing_docs)]

pub mod awsfile;
pub mod message;
pub mod nfs4;
pub mod peek;
pub mod record;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod xdr;

pub use message::{
    AcceptStat, AuthFlavor, AuthStat, AuthSys, CallHeader, MessageBody, OpaqueAuth, ReplyHeader,
    RpcMessage,
};
pub use peek::{
    HeaderPeek, MessageType, ReplyError, looks_like_reply, parse_accepted_reply, peek_header,
};
pub use record::{DEFAULT_MAX_RECORD_SIZE, Record, RecordCodec, RecordError, RecordMark};
pub use xdr::XdrError;
