//! An in-process RPC responder: the simplest server that answers every call, so tests and
//! benchmarks can check records end to end without a real NFS server.

use bytes::{BufMut, BytesMut};
use efs_rpc::{AcceptStat, MessageBody, ReplyHeader, RpcMessage};

/// Procedure of a benchmark READ: the reply carries as many bytes as the call's first
/// argument word asks for (NFSv4 has no procedure 6, so no real traffic looks like this).
pub const BENCH_READ: u32 = 6;

/// What the responder puts in each successful reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Responder {
    /// The call's arguments, byte for byte (checks integrity both ways).
    Echo,
    /// This many zero bytes (a READ-sized reply to any call).
    Fixed(usize),
    /// Nothing: a reply header only (a WRITE-sized call gets a tiny reply).
    Empty,
    /// No reply at all: a server that hangs (the socket stays open).
    Silent,
    /// Benchmarks: procedure [`BENCH_READ`] gets the number of zero bytes its first argument
    /// word asks for, every other call a reply header only.
    Bench,
}

impl Responder {
    /// Parses the command-line spelling: `echo`, `empty`, `silent`, `bench`, or a byte count.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "echo" => Some(Responder::Echo),
            "empty" => Some(Responder::Empty),
            "silent" => Some(Responder::Silent),
            "bench" => Some(Responder::Bench),
            n => n.parse().ok().map(Responder::Fixed),
        }
    }
}

/// Largest reply body the responder makes (one record of efs-proxy's default limit).
const MAX_BODY: usize = 1024 * 1024;

/// The reply message to `message`, or `None` when it is a reply (nothing to answer).
/// A call whose header cannot be decoded gets GARBAGE_ARGS when its xid is readable.
pub fn respond(responder: &Responder, message: &[u8]) -> Option<Vec<u8>> {
    let mut out = BytesMut::new();
    respond_record(responder, message, &mut out).then(|| out[4..].to_vec())
}

/// Appends the reply to `message` as a record (record mark included) to `out`; false when
/// there is nothing to answer. Reuses `out`'s memory, so a benchmark responder does not
/// allocate per call.
pub fn respond_record(responder: &Responder, message: &[u8], out: &mut BytesMut) -> bool {
    let (xid, stat, body_len, echo) = match RpcMessage::decode(message) {
        Ok((header, args)) => {
            let MessageBody::Call(call) = header.body else {
                return false;
            };
            let body_len = match (call.procedure, responder) {
                (_, Responder::Silent) => return false,
                (0, _) => 0, // NULL
                (_, Responder::Echo) => args.len(),
                (_, Responder::Fixed(n)) => *n,
                (BENCH_READ, Responder::Bench) => args
                    .get(..4)
                    .map_or(0, |w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as usize)
                    .min(MAX_BODY),
                (_, Responder::Empty | Responder::Bench) => 0,
            };
            let echo = (*responder == Responder::Echo).then_some(args);
            (header.xid, AcceptStat::Success, body_len, echo)
        }
        Err(_) => match message.get(..4) {
            Some(w) => (
                u32::from_be_bytes([w[0], w[1], w[2], w[3]]),
                AcceptStat::GarbageArgs,
                0,
                None,
            ),
            None => return false,
        },
    };
    let Ok(header) = RpcMessage::reply(xid, ReplyHeader::accepted(stat)).encode() else {
        return false;
    };
    let len = header.len() + body_len;
    out.reserve(4 + len);
    out.put_u32(len as u32 | 0x8000_0000);
    out.put_slice(&header);
    match echo {
        Some(args) => out.put_slice(args),
        None => out.put_bytes(0, body_len),
    }
    true
}
