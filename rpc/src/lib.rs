//! # efs-rpc: the bytes of an EFS / S3 Files connection
//!
//! Everything here is pure data: no sockets, no runtime. It knows
//!
//! * [`record`]: RFC 5531 record marking, as a `tokio_util::codec` decoder/encoder with a
//!   bounded record size;
//! * [`message`]: ONC RPC v2 call and reply headers, AUTH_NONE and AUTH_SYS;
//! * [`awsfile`]: the AWSFILE program (400123) and its `bind_client_to_partition` procedure;
//! * [`nfs4`]: whether an NFSv4.1 COMPOUND call starts with SEQUENCE (its first operation
//!   number, nothing more);
//! * [`xdr`]: the XDR primitives the above are built on (`xdr-codec`'s `Pack`/`Unpack` traits,
//!   with bounded readers for untrusted input).
//!
//! Every decoder takes untrusted bytes: errors are values, never panics, and no allocation is
//! larger than the data present or the configured limit.

pub mod awsfile;
pub mod message;
pub mod nfs4;
pub mod record;
pub mod xdr;

pub use message::{
    AcceptStat, AuthFlavor, AuthStat, AuthSys, CallHeader, MessageBody, OpaqueAuth, ReplyError,
    ReplyHeader, RpcMessage, parse_accepted_reply,
};
pub use record::{DEFAULT_MAX_RECORD_SIZE, Record, RecordCodec, RecordError};
pub use xdr::XdrError;
