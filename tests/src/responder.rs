//! An in-process RPC responder: the simplest server that answers every call, so tests and
//! benchmarks can check records end to end without a real NFS server.

use efs_rpc::{AcceptStat, MessageBody, ReplyHeader, RpcMessage};

/// What the responder puts in each successful reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Responder {
    /// The call's arguments, byte for byte (checks integrity both ways).
    Echo,
    /// This many zero bytes (a READ-sized reply to any call).
    Fixed(usize),
    /// Nothing: a reply header only (a WRITE-sized call gets a tiny reply).
    Empty,
}

impl Responder {
    /// Parses the command-line spelling: `echo`, `empty`, or a byte count.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "echo" => Some(Responder::Echo),
            "empty" => Some(Responder::Empty),
            n => n.parse().ok().map(Responder::Fixed),
        }
    }
}

/// The reply message to `message`, or `None` when it is a reply (nothing to answer).
/// A call whose header cannot be decoded gets GARBAGE_ARGS when its xid is readable.
pub fn respond(responder: &Responder, message: &[u8]) -> Option<Vec<u8>> {
    let (header, args) = match RpcMessage::decode(message) {
        Ok(decoded) => decoded,
        Err(_) => {
            let xid = u32::from_be_bytes(message.get(..4)?.try_into().ok()?);
            let reply = RpcMessage::reply(xid, ReplyHeader::accepted(AcceptStat::GarbageArgs));
            return reply.encode().ok();
        }
    };
    let MessageBody::Call(call) = header.body else {
        return None;
    };
    let ok = RpcMessage::reply(header.xid, ReplyHeader::accepted(AcceptStat::Success));
    let body: Vec<u8> = match (call.procedure, responder) {
        (0, _) => Vec::new(), // NULL
        (_, Responder::Echo) => args.to_vec(),
        (_, Responder::Fixed(n)) => vec![0; *n],
        (_, Responder::Empty) => Vec::new(),
    };
    ok.encode_with_body(&body).ok()
}
