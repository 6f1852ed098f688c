//! Reading what a message is without keeping its header: the peek a forwarder routes replies
//! by (xid and message type), the sniff that tells an RPC peer from one speaking anything else,
//! and the results of an accepted reply, or why there are none.
//!
//! Apart from [`crate::message`] because these are the questions the proxy asks of every
//! record and of every first reply from an unknown peer; the full header model is only needed
//! to build messages and to decode a refusal in detail.

use crate::message::{
    AcceptStat, AuthStat, CALL, MSG_ACCEPTED, MSG_DENIED, MessageBody, REPLY, ReplyHeader,
    RpcMessage,
};
use crate::xdr::XdrError;

/// `msg_type`: a call or a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// `CALL` (0).
    Call,
    /// `REPLY` (1).
    Reply,
}

/// The first two words of an RPC message, read without decoding the rest: what a forwarder
/// matches replies to calls by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPeek {
    /// The transaction id (first word).
    pub xid: u32,
    /// Call or reply (second word).
    pub kind: MessageType,
}

/// Reads the xid and message type of `message` (an RPC message without its record mark);
/// `None` when it is shorter than eight bytes or neither a call nor a reply.
pub fn peek_header(message: &[u8]) -> Option<HeaderPeek> {
    let (xid, rest) = message.split_first_chunk::<4>()?;
    let (kind, _) = rest.split_first_chunk::<4>()?;
    let kind = match u32::from_be_bytes(*kind) {
        CALL => MessageType::Call,
        REPLY => MessageType::Reply,
        _ => return None,
    };
    Some(HeaderPeek {
        xid: u32::from_be_bytes(*xid),
        kind,
    })
}

/// True when `message` (without its record mark) starts like an RPC reply: type REPLY and a
/// defined `reply_stat` (MSG_ACCEPTED or MSG_DENIED). Twelve bytes are enough to tell a peer
/// that answers in RPC from one that answers in TLS or anything else.
pub fn looks_like_reply(message: &[u8]) -> bool {
    let reply_stat = message
        .get(8..12)
        .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    peek_header(message).is_some_and(|h| h.kind == MessageType::Reply)
        && matches!(reply_stat, Some(MSG_ACCEPTED | MSG_DENIED))
}

/// Why a reply carries no results: the server refused the call, or the bytes are no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The bytes do not decode as an RPC reply header.
    #[error("malformed RPC reply: {0}")]
    Malformed(#[from] XdrError),
    /// The message is a call, not a reply.
    #[error("expected an RPC reply, got a call")]
    NotAReply,
    /// Accepted, `PROG_UNAVAIL`: the server does not serve the program.
    #[error("program unavailable (PROG_UNAVAIL)")]
    ProgUnavail,
    /// Accepted, `PROG_MISMATCH`: the server serves the program, but not the version called.
    #[error("program version mismatch (PROG_MISMATCH, server supports {low}..={high})")]
    ProgMismatch {
        /// The lowest program version the server supports.
        low: u32,
        /// The highest program version the server supports.
        high: u32,
    },
    /// Accepted, `PROC_UNAVAIL`: no such procedure in this program version.
    #[error("procedure unavailable (PROC_UNAVAIL)")]
    ProcUnavail,
    /// Accepted, `GARBAGE_ARGS`: the server could not decode the arguments.
    #[error("server could not decode the arguments (GARBAGE_ARGS)")]
    GarbageArgs,
    /// Accepted, `SYSTEM_ERR`: the server failed for its own reasons.
    #[error("server system error (SYSTEM_ERR)")]
    SystemErr,
    /// Denied, `RPC_MISMATCH`: the server does not speak RPC version 2.
    #[error("RPC version mismatch (RPC_MISMATCH, server supports {low}..={high})")]
    RpcMismatch {
        /// The lowest RPC protocol version the server supports.
        low: u32,
        /// The highest RPC protocol version the server supports.
        high: u32,
    },
    /// Denied, `AUTH_ERROR`: the server rejected the credential or verifier.
    #[error("authentication error (AUTH_ERROR, auth_stat {})", .0.0)]
    AuthError(AuthStat),
}

/// Parses a reply message and returns its xid and results, or why there are none.
pub fn parse_accepted_reply(message: &[u8]) -> Result<(u32, &[u8]), ReplyError> {
    let (header, results) = RpcMessage::decode(message)?;
    let reply = match header.body {
        MessageBody::Call(_) => return Err(ReplyError::NotAReply),
        MessageBody::Reply(reply) => reply,
    };
    match reply {
        ReplyHeader::Accepted { stat, .. } => match stat {
            AcceptStat::Success => Ok((header.xid, results)),
            AcceptStat::ProgUnavail => Err(ReplyError::ProgUnavail),
            AcceptStat::ProgMismatch { low, high } => Err(ReplyError::ProgMismatch { low, high }),
            AcceptStat::ProcUnavail => Err(ReplyError::ProcUnavail),
            AcceptStat::GarbageArgs => Err(ReplyError::GarbageArgs),
            AcceptStat::SystemErr => Err(ReplyError::SystemErr),
        },
        ReplyHeader::RpcMismatch { low, high } => Err(ReplyError::RpcMismatch { low, high }),
        ReplyHeader::AuthError(stat) => Err(ReplyError::AuthError(stat)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::CallHeader;

    #[test]
    fn the_header_peek_agrees_with_the_decoder() {
        let call = RpcMessage::call(0x0102_0304, CallHeader::new(100_003, 4, 0))
            .encode()
            .unwrap();
        let peek = peek_header(&call).unwrap();
        assert_eq!((peek.xid, peek.kind), (0x0102_0304, MessageType::Call));
        assert!(!looks_like_reply(&call));
        for header in [
            ReplyHeader::accepted(AcceptStat::Success),
            ReplyHeader::AuthError(AuthStat::TOOWEAK),
        ] {
            let reply = RpcMessage::reply(9, header).encode().unwrap();
            assert_eq!(peek_header(&reply).unwrap().kind, MessageType::Reply);
            assert!(looks_like_reply(&reply));
            assert!(!looks_like_reply(&reply[..11]));
        }
        assert_eq!(peek_header(&call[..7]), None);
        assert_eq!(peek_header(&[0, 0, 0, 1, 0, 0, 0, 2]), None, "msg_type 2");
        assert!(!looks_like_reply(b"SSH-2.0-OpenSSH_9.2p1 Debian"));
    }

    #[test]
    fn parse_accepted_reply_maps_every_status() {
        let reply = |h| RpcMessage::reply(5, h).encode_with_body(b"res").unwrap();
        let ok = reply(ReplyHeader::accepted(AcceptStat::Success));
        assert_eq!(parse_accepted_reply(&ok).unwrap(), (5, &b"res"[..]));
        let cases = [
            (
                ReplyHeader::accepted(AcceptStat::ProgUnavail),
                ReplyError::ProgUnavail,
            ),
            (
                ReplyHeader::accepted(AcceptStat::ProgMismatch { low: 4, high: 4 }),
                ReplyError::ProgMismatch { low: 4, high: 4 },
            ),
            (
                ReplyHeader::accepted(AcceptStat::ProcUnavail),
                ReplyError::ProcUnavail,
            ),
            (
                ReplyHeader::accepted(AcceptStat::GarbageArgs),
                ReplyError::GarbageArgs,
            ),
            (
                ReplyHeader::accepted(AcceptStat::SystemErr),
                ReplyError::SystemErr,
            ),
            (
                ReplyHeader::RpcMismatch { low: 2, high: 2 },
                ReplyError::RpcMismatch { low: 2, high: 2 },
            ),
            (
                ReplyHeader::AuthError(AuthStat::TOOWEAK),
                ReplyError::AuthError(AuthStat::TOOWEAK),
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(parse_accepted_reply(&reply(header)).unwrap_err(), expected);
        }
        let call = RpcMessage::call(1, CallHeader::new(1, 1, 1))
            .encode()
            .unwrap();
        assert_eq!(
            parse_accepted_reply(&call).unwrap_err(),
            ReplyError::NotAReply
        );
        assert!(matches!(
            parse_accepted_reply(b"\x00\x01"),
            Err(ReplyError::Malformed(XdrError::Truncated))
        ));
    }
}
