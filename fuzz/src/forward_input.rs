//! The byte formats of the `forward` and `forward_group` inputs: operations on each side of
//! the forwarder, written so that seeds can be made from real RPC records.

use crate::LAST_FRAGMENT;
use crate::input::Reader;

/// One end of the forwarding path, as seen by the fuzz driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The NFS client.
    Client,
    /// The mount target.
    Server,
}

/// What the driver of the `forward` target does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Write these raw bytes (as far as the peer takes them).
    Write(Side, Vec<u8>),
    /// Write `count` valid records of `len` message bytes, each split in `fragments`.
    WriteRecords {
        side: Side,
        count: u16,
        len: u16,
        fragments: u8,
    },
    /// Read up to this many bytes (0: whatever is available).
    Read(Side, u16),
    /// Half-close: no more writes from this side.
    ShutdownWrite(Side),
    /// Drop this side's stream entirely.
    Drop(Side),
    /// Let virtual time pass.
    Sleep(u16),
    /// Both sides read until nothing more arrives; a forwarder still running must then have
    /// delivered every complete record sent so far.
    Quiesce,
}

/// Input of the `forward` target. Byte format (big-endian, missing bytes read as zero):
/// `[max_record_size - 1: u16][duplex capacity - 1: u16][flags: u8][pending len: u16]
/// [pending] ops...`, each op an opcode byte (`op | side << 3`) and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardInput {
    pub max_record_size: usize,
    pub duplex_capacity: usize,
    /// Which side closes first when the ops are done (the other must then be closed by the
    /// forwarder).
    pub final_close: Side,
    pub pending: Vec<u8>,
    pub ops: Vec<Op>,
}

const OP_WRITE: u8 = 0;
const OP_WRITE_RECORDS: u8 = 1;
const OP_READ: u8 = 2;
const OP_SHUTDOWN: u8 = 3;
const OP_DROP: u8 = 4;
const OP_SLEEP: u8 = 5;
const OP_WRITE_FRAMED: u8 = 6;
const OP_QUIESCE: u8 = 7;

fn side_bit(side: Side) -> u8 {
    match side {
        Side::Client => 0,
        Side::Server => 8,
    }
}

impl ForwardInput {
    pub fn parse(data: &[u8]) -> ForwardInput {
        let mut r = Reader(data);
        let max_record_size = 1 + usize::from(r.u16());
        let duplex_capacity = 1 + usize::from(r.u16());
        let flags = r.u8();
        let pending_len = usize::from(r.u16());
        let pending = r.bytes(pending_len).to_vec();
        let mut ops = Vec::new();
        while !r.is_empty() {
            let code = r.u8();
            let side = if code & 8 == 0 {
                Side::Client
            } else {
                Side::Server
            };
            let op = match code & 7 {
                OP_WRITE => {
                    let n = usize::from(r.u16());
                    Op::Write(side, r.bytes(n).to_vec())
                }
                OP_WRITE_RECORDS => Op::WriteRecords {
                    side,
                    count: r.u16(),
                    len: r.u16(),
                    fragments: r.u8(),
                },
                OP_READ => Op::Read(side, r.u16()),
                OP_SHUTDOWN => Op::ShutdownWrite(side),
                OP_DROP => Op::Drop(side),
                OP_SLEEP => Op::Sleep(r.u16()),
                OP_WRITE_FRAMED => {
                    // One fragment with a correct record mark: bit 4 of the opcode says last.
                    let n = usize::from(r.u16());
                    let body = r.bytes(n);
                    let last = if code & 16 != 0 { LAST_FRAGMENT } else { 0 };
                    let mut bytes = (body.len() as u32 | last).to_be_bytes().to_vec();
                    bytes.extend_from_slice(body);
                    Op::Write(side, bytes)
                }
                _ => Op::Quiesce,
            };
            ops.push(op);
        }
        ForwardInput {
            max_record_size,
            duplex_capacity,
            final_close: if flags & 1 == 0 {
                Side::Client
            } else {
                Side::Server
            },
            pending,
            ops,
        }
    }

    /// The bytes that [`ForwardInput::parse`] turns into `self` (for seeds).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let u16_of = |n: usize| (n.clamp(1, 65536) - 1) as u16;
        out.extend(u16_of(self.max_record_size).to_be_bytes());
        out.extend(u16_of(self.duplex_capacity).to_be_bytes());
        out.push(u8::from(self.final_close == Side::Server));
        out.extend((self.pending.len() as u16).to_be_bytes());
        out.extend(&self.pending);
        for op in &self.ops {
            match op {
                Op::Write(side, bytes) => {
                    out.push(OP_WRITE | side_bit(*side));
                    out.extend((bytes.len() as u16).to_be_bytes());
                    out.extend(bytes);
                }
                Op::WriteRecords {
                    side,
                    count,
                    len,
                    fragments,
                } => {
                    out.push(OP_WRITE_RECORDS | side_bit(*side));
                    out.extend(count.to_be_bytes());
                    out.extend(len.to_be_bytes());
                    out.push(*fragments);
                }
                Op::Read(side, n) => {
                    out.push(OP_READ | side_bit(*side));
                    out.extend(n.to_be_bytes());
                }
                Op::ShutdownWrite(side) => out.push(OP_SHUTDOWN | side_bit(*side)),
                Op::Drop(side) => out.push(OP_DROP | side_bit(*side)),
                Op::Sleep(ms) => {
                    out.push(OP_SLEEP);
                    out.extend(ms.to_be_bytes());
                }
                Op::Quiesce => out.push(OP_QUIESCE),
            }
        }
        out
    }
}

/// The wire bytes of record `index` of a `WriteRecords` op, written to `out`: a message of
/// `len` bytes (at least one) that starts like an RPC message (xid `index`, then `msg_type`:
/// 0 for a call, 1 for a reply) so the forwarder's call tracking sees real xids, in
/// `fragments` fragments.
pub fn generated_record(
    index: u32,
    msg_type: u32,
    len: usize,
    fragments: usize,
    out: &mut Vec<u8>,
) {
    generated_record_salted(index, msg_type, 0, len, fragments, out);
}

/// [`generated_record`] with the body bytes XORed with `salt`, so that records of different
/// senders differ.
pub fn generated_record_salted(
    index: u32,
    msg_type: u32,
    salt: u8,
    len: usize,
    fragments: usize,
    out: &mut Vec<u8>,
) {
    let len = len.max(1);
    let mut message = Vec::with_capacity(len.max(8));
    message.extend(index.to_be_bytes());
    message.extend(msg_type.to_be_bytes());
    message.extend((8..len).map(|i| (i as u8) ^ (index as u8) ^ salt));
    message.truncate(len);
    let per_fragment = len.div_ceil(fragments.max(1));
    out.clear();
    out.extend_from_slice(&crate::reference::fragments(&message, per_fragment));
}

/// An action of the `forward_group` driver on one endpoint (0: the client, k: server leg k-1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOp {
    Write(Vec<u8>),
    /// `count` valid records of `len` bytes in `fragments` fragments; calls from the client
    /// and replies from a server, or the other way round with `flip` (server callbacks, and
    /// the client's replies to them).
    WriteRecords {
        count: u16,
        len: u16,
        fragments: u8,
        flip: bool,
    },
    Read(u16),
    ShutdownWrite,
    Drop,
    Sleep(u16),
    Quiesce,
}

/// Input of the `forward_group` target: one client and up to four server connections (the
/// first given at the start, the others handed over by the scale-up search). Byte format:
/// `[max_record_size - 1: u16][duplex capacity - 1: u16][flags: u8][pending len: u16]
/// [pending] ops...`; flags: bits 0-1 legs - 1, bit 2 back off first, bits 3-7 the server
/// timeout in 200 ms steps (0: none). Each op: a byte (`op | endpoint << 3 | flag << 6`)
/// and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInput {
    pub max_record_size: usize,
    pub duplex_capacity: usize,
    pub legs: usize,
    pub backoff_first: bool,
    pub server_timeout_ms: Option<u64>,
    pub pending: Vec<u8>,
    pub ops: Vec<(usize, GroupOp)>,
}

impl GroupInput {
    pub fn parse(data: &[u8]) -> GroupInput {
        let mut r = Reader(data);
        let max_record_size = 1 + usize::from(r.u16());
        let duplex_capacity = 1 + usize::from(r.u16());
        let flags = r.u8();
        let legs = 1 + usize::from(flags & 3);
        let timeout = u64::from(flags >> 3);
        let pending_len = usize::from(r.u16());
        let pending = r.bytes(pending_len).to_vec();
        let mut ops = Vec::new();
        while !r.is_empty() {
            let code = r.u8();
            let endpoint = usize::from((code >> 3) & 7) % (legs + 1);
            let flag = code & 0x40 != 0;
            let op = match code & 7 {
                OP_WRITE => {
                    let n = usize::from(r.u16());
                    GroupOp::Write(r.bytes(n).to_vec())
                }
                OP_WRITE_RECORDS => GroupOp::WriteRecords {
                    count: r.u16(),
                    len: r.u16(),
                    fragments: r.u8(),
                    flip: flag,
                },
                OP_READ => GroupOp::Read(r.u16()),
                OP_SHUTDOWN => GroupOp::ShutdownWrite,
                OP_DROP => GroupOp::Drop,
                OP_SLEEP => GroupOp::Sleep(r.u16()),
                OP_WRITE_FRAMED => {
                    let n = usize::from(r.u16());
                    let body = r.bytes(n);
                    let last = if flag { LAST_FRAGMENT } else { 0 };
                    let mut bytes = (body.len() as u32 | last).to_be_bytes().to_vec();
                    bytes.extend_from_slice(body);
                    GroupOp::Write(bytes)
                }
                _ => GroupOp::Quiesce,
            };
            ops.push((endpoint, op));
        }
        GroupInput {
            max_record_size,
            duplex_capacity,
            legs,
            backoff_first: flags & 4 != 0,
            server_timeout_ms: (timeout > 0).then_some(timeout * 200),
            pending,
            ops,
        }
    }

    /// The bytes that [`GroupInput::parse`] turns into `self` (for seeds).
    pub fn encode(&self) -> Vec<u8> {
        let u16_of = |n: usize| (n.clamp(1, 65536) - 1) as u16;
        let mut out = Vec::new();
        out.extend(u16_of(self.max_record_size).to_be_bytes());
        out.extend(u16_of(self.duplex_capacity).to_be_bytes());
        let timeout = self
            .server_timeout_ms
            .map_or(0, |ms| (ms / 200).clamp(1, 31)) as u8;
        out.push(
            (self.legs.clamp(1, 4) - 1) as u8 | u8::from(self.backoff_first) << 2 | timeout << 3,
        );
        out.extend((self.pending.len() as u16).to_be_bytes());
        out.extend(&self.pending);
        for (endpoint, op) in &self.ops {
            let at = (*endpoint as u8) << 3;
            match op {
                GroupOp::Write(bytes) => {
                    out.push(OP_WRITE | at);
                    out.extend((bytes.len() as u16).to_be_bytes());
                    out.extend(bytes);
                }
                GroupOp::WriteRecords {
                    count,
                    len,
                    fragments,
                    flip,
                } => {
                    out.push(OP_WRITE_RECORDS | at | u8::from(*flip) << 6);
                    out.extend(count.to_be_bytes());
                    out.extend(len.to_be_bytes());
                    out.push(*fragments);
                }
                GroupOp::Read(n) => {
                    out.push(OP_READ | at);
                    out.extend(n.to_be_bytes());
                }
                GroupOp::ShutdownWrite => out.push(OP_SHUTDOWN | at),
                GroupOp::Drop => out.push(OP_DROP | at),
                GroupOp::Sleep(ms) => {
                    out.push(OP_SLEEP | at);
                    out.extend(ms.to_be_bytes());
                }
                GroupOp::Quiesce => out.push(OP_QUIESCE | at),
            }
        }
        out
    }
}

/// The records of a stream of single-fragment records (what a forwarder writes), without
/// their marks; an incomplete record at the end is left out.
pub fn split_records(wire: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = wire;
    while let Some(efs_rpc::RecordMark { len, .. }) = efs_rpc::RecordMark::peek(rest) {
        if rest.len() - 4 < len {
            break;
        }
        out.push(&rest[4..4 + len]);
        rest = &rest[4 + len..];
    }
    out
}

/// Whether `part` can be obtained from `whole` by deleting elements (order kept).
pub fn is_subsequence<T: PartialEq>(part: &[T], whole: &[T]) -> bool {
    let mut it = whole.iter();
    part.iter().all(|p| it.any(|w| w == p))
}
