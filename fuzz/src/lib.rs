//! Shared pieces of the fuzz targets: a reference record-marking decoder (the oracle the real
//! codec and the forwarder are compared with), the byte formats of the `record_stream` and
//! `forward` inputs (hand-written so that seeds can be made from real RPC records), and an
//! allocation counter for the forwarding target.

pub mod peer;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

pub use efs_rpc::record::{FRAGMENT_SIZE_MASK, LAST_FRAGMENT};

/// Why the reference decoder stopped, in the terms of `efs_rpc::RecordError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefError {
    ZeroSizeFragment,
    FragmentTooLarge { size: usize, max: usize },
    RecordTooLarge { size: usize, max: usize },
    Truncated { buffered: usize },
}

impl RefError {
    /// The same error as the real codec reports it, if `e` is a decoding (not I/O) error.
    pub fn of(e: &efs_rpc::RecordError) -> Option<RefError> {
        use efs_rpc::RecordError as E;
        Some(match *e {
            E::ZeroSizeFragment => RefError::ZeroSizeFragment,
            E::FragmentTooLarge { size, max } => RefError::FragmentTooLarge { size, max },
            E::RecordTooLarge { size, max } => RefError::RecordTooLarge { size, max },
            E::Truncated { buffered } => RefError::Truncated { buffered },
            E::Io(_) => return None,
        })
    }
}

/// What RFC 5531 record marking makes of a byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefDecode {
    /// The complete records, as messages (fragments joined).
    pub messages: Vec<Vec<u8>>,
    /// `Ok` when the stream is a valid sequence of records so far (or, with `eof`, entirely).
    pub end: Result<(), RefError>,
}

impl RefDecode {
    /// The records re-framed as single fragments: what a forwarder must write.
    pub fn wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for m in &self.messages {
            out.extend_from_slice(&(m.len() as u32 | LAST_FRAGMENT).to_be_bytes());
            out.extend_from_slice(m);
        }
        out
    }
}

/// The reference decoder: the RFC's rules plus the codec's documented limits, written the
/// obvious way (whole stream at once). `eof` says the stream ended there.
pub fn reference_records(stream: &[u8], max_record_size: usize, eof: bool) -> RefDecode {
    let max = max_record_size.min(FRAGMENT_SIZE_MASK as usize);
    let mut messages = Vec::new();
    let mut pos = 0usize;
    let mut partial: Option<Vec<u8>> = None;
    let fail = |messages, e| RefDecode {
        messages,
        end: Err(e),
    };
    while stream.len() - pos >= 4 {
        let mark = u32::from_be_bytes(stream[pos..pos + 4].try_into().unwrap());
        let size = (mark & FRAGMENT_SIZE_MASK) as usize;
        let last = mark & LAST_FRAGMENT != 0;
        if size == 0 {
            return fail(messages, RefError::ZeroSizeFragment);
        }
        if size > max {
            return fail(messages, RefError::FragmentTooLarge { size, max });
        }
        let so_far = partial.as_ref().map_or(0, Vec::len);
        if so_far + size > max {
            let size = so_far + size;
            return fail(messages, RefError::RecordTooLarge { size, max });
        }
        if stream.len() - pos - 4 < size {
            break;
        }
        let fragment = &stream[pos + 4..pos + 4 + size];
        pos += 4 + size;
        partial
            .get_or_insert_with(Vec::new)
            .extend_from_slice(fragment);
        if last {
            messages.extend(partial.take());
        }
    }
    let so_far = partial.as_ref().map_or(0, Vec::len);
    if eof && (pos < stream.len() || partial.is_some()) {
        let buffered = stream.len() - pos + so_far;
        return fail(messages, RefError::Truncated { buffered });
    }
    RefDecode {
        messages,
        end: Ok(()),
    }
}

/// What a forwarder must write for a byte stream: its complete records re-framed as single
/// fragments, how many there are, and whether the stream is valid. The same rules as
/// [`reference_records`], in one pass and one allocation (the forwarding target calls it on
/// megabytes at a time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reframed {
    pub wire: Vec<u8>,
    pub records: usize,
    pub end: Result<(), RefError>,
}

pub fn reframe(stream: &[u8], max_record_size: usize, eof: bool) -> Reframed {
    let max = max_record_size.min(FRAGMENT_SIZE_MASK as usize);
    let mut wire = Vec::with_capacity(stream.len());
    let mut records = 0;
    let mut pos = 0usize;
    // Start of the record being reassembled in `wire` (its mark is written at the end).
    let mut record_start: Option<usize> = None;
    let mut end = Ok(());
    while stream.len() - pos >= 4 {
        let mark = u32::from_be_bytes(stream[pos..pos + 4].try_into().unwrap());
        let size = (mark & FRAGMENT_SIZE_MASK) as usize;
        let last = mark & LAST_FRAGMENT != 0;
        let so_far = record_start.map_or(0, |start| wire.len() - start - 4);
        if size == 0 {
            end = Err(RefError::ZeroSizeFragment);
        } else if size > max {
            end = Err(RefError::FragmentTooLarge { size, max });
        } else if so_far + size > max {
            end = Err(RefError::RecordTooLarge {
                size: so_far + size,
                max,
            });
        }
        if end.is_err() || stream.len() - pos - 4 < size {
            break;
        }
        let start = *record_start.get_or_insert_with(|| {
            wire.extend_from_slice(&[0; 4]);
            wire.len() - 4
        });
        wire.extend_from_slice(&stream[pos + 4..pos + 4 + size]);
        pos += 4 + size;
        if last {
            let len = (wire.len() - start - 4) as u32 | LAST_FRAGMENT;
            wire[start..start + 4].copy_from_slice(&len.to_be_bytes());
            record_start = None;
            records += 1;
        }
    }
    let partial = record_start.map(|start| {
        let so_far = wire.len() - start - 4;
        wire.truncate(start);
        so_far
    });
    if end.is_ok() && eof && (pos < stream.len() || partial.is_some()) {
        let buffered = stream.len() - pos + partial.unwrap_or(0);
        end = Err(RefError::Truncated { buffered });
    }
    Reframed { wire, records, end }
}

/// Frames `message` as fragments of at most `fragment` bytes (the last one marked).
pub fn fragments(message: &[u8], fragment: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let pieces: Vec<&[u8]> = message.chunks(fragment.max(1)).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let last = if i + 1 == pieces.len() {
            LAST_FRAGMENT
        } else {
            0
        };
        out.extend_from_slice(&(piece.len() as u32 | last).to_be_bytes());
        out.extend_from_slice(piece);
    }
    out
}

/// A tiny deterministic generator (xorshift32) for chunk sizes.
#[derive(Debug, Clone)]
pub struct Rng(u32);

impl Rng {
    pub fn new(seed: u32) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// A value in `1..=n`.
    pub fn between_1_and(&mut self, n: usize) -> usize {
        1 + (self.next_u32() as usize) % n.max(1)
    }
}

/// Reads big-endian fields from the front of a byte slice; missing bytes read as zero, so
/// every input is valid.
#[derive(Debug)]
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Input of the `record_stream` target: `[max_record_size - 1: u16][chunk limit - 1: u8]
/// [chunk seed: u8] stream...`.
#[derive(Debug)]
pub struct RecordStreamInput<'a> {
    pub max_record_size: usize,
    pub max_chunk: usize,
    pub seed: u32,
    pub stream: &'a [u8],
}

impl<'a> RecordStreamInput<'a> {
    pub fn parse(data: &'a [u8]) -> Self {
        let mut r = Reader(data);
        let max_record_size = 1 + usize::from(r.u16());
        let max_chunk = 1 + usize::from(r.u8());
        let seed = u32::from(r.u8()).wrapping_mul(0x9e37_79b9) | 1;
        RecordStreamInput {
            max_record_size,
            max_chunk,
            seed,
            stream: r.0,
        }
    }

    pub fn encode(max_record_size: u16, max_chunk: u8, seed: u8, stream: &[u8]) -> Vec<u8> {
        let mut out = max_record_size.saturating_sub(1).to_be_bytes().to_vec();
        out.push(max_chunk.saturating_sub(1));
        out.push(seed);
        out.extend_from_slice(stream);
        out
    }
}

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
    out.extend_from_slice(&self::fragments(&message, per_fragment));
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

/// Input of the `cert_extensions` target. Byte format: `[flags: u8][time: u32][backdate: u16]
/// [lifetime: u32][tlv tag: u8]`, then the text fields in the order of the struct, separated
/// by 0xff (never part of UTF-8), and last the TLV content (the rest, raw). Text fields are
/// decoded lossily, so every input is valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertInput {
    /// Sign with the secret key (else `signature` goes into extension 7.2 as is).
    pub sign: bool,
    /// EFS (else S3 Files).
    pub efs: bool,
    /// Build and parse the whole certificate too.
    pub build: bool,
    /// Seconds since 1950-01-01T00:00:00Z.
    pub time: u32,
    pub backdate: u16,
    pub lifetime: u32,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub signature: String,
    pub fs_id: String,
    pub region: String,
    pub access_point: Option<String>,
    pub source: String,
    pub version: String,
    pub common_name: String,
    /// Fed to the signing-time parsers; also the bytes after the TLV.
    pub text: String,
    pub tlv_tag: u8,
    pub tlv_content: Vec<u8>,
}

const CERT_SIGN: u8 = 1;
const CERT_EFS: u8 = 2;
const CERT_BUILD: u8 = 4;
const CERT_TOKEN: u8 = 8;
const CERT_ACCESS_POINT: u8 = 16;

impl CertInput {
    pub fn parse(data: &[u8]) -> CertInput {
        let mut r = Reader(data);
        let flags = r.u8();
        let time = u32::from(r.u16()) << 16 | u32::from(r.u16());
        let backdate = r.u16();
        let lifetime = u32::from(r.u16()) << 16 | u32::from(r.u16());
        let tlv_tag = r.u8();
        let mut fields = r.0.splitn(12, |b| *b == 0xff);
        let mut text = || String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
        let access_key_id = text();
        let secret_access_key = text();
        let token = text();
        let session_token = (flags & CERT_TOKEN != 0).then_some(token);
        let signature = text();
        let fs_id = text();
        let region = text();
        let access_point_id = text();
        let access_point = (flags & CERT_ACCESS_POINT != 0).then_some(access_point_id);
        let source = text();
        let version = text();
        let common_name = text();
        let text_field = text();
        let tlv_content = fields.next().unwrap_or_default().to_vec();
        CertInput {
            sign: flags & CERT_SIGN != 0,
            efs: flags & CERT_EFS != 0,
            build: flags & CERT_BUILD != 0,
            time,
            backdate,
            lifetime,
            access_key_id,
            secret_access_key,
            session_token,
            signature,
            fs_id,
            region,
            access_point,
            source,
            version,
            common_name,
            text: text_field,
            tlv_tag,
            tlv_content,
        }
    }

    /// The bytes that [`CertInput::parse`] turns into `self` (for seeds; text fields must not
    /// contain U+FFFD, the TLV content may be anything).
    pub fn encode(&self) -> Vec<u8> {
        let mut flags = 0;
        for (on, bit) in [
            (self.sign, CERT_SIGN),
            (self.efs, CERT_EFS),
            (self.build, CERT_BUILD),
            (self.session_token.is_some(), CERT_TOKEN),
            (self.access_point.is_some(), CERT_ACCESS_POINT),
        ] {
            if on {
                flags |= bit;
            }
        }
        let mut out = vec![flags];
        out.extend(self.time.to_be_bytes());
        out.extend(self.backdate.to_be_bytes());
        out.extend(self.lifetime.to_be_bytes());
        out.push(self.tlv_tag);
        let fields = [
            self.access_key_id.as_str(),
            &self.secret_access_key,
            self.session_token.as_deref().unwrap_or(""),
            &self.signature,
            &self.fs_id,
            &self.region,
            self.access_point.as_deref().unwrap_or(""),
            &self.source,
            &self.version,
            &self.common_name,
            &self.text,
        ];
        for field in fields {
            out.extend(field.as_bytes());
            out.push(0xff);
        }
        out.extend(&self.tlv_content);
        out
    }
}

/// A global allocator that counts the bytes live on the current thread's tracked allocations
/// and their peak, so the forwarding target can bound the forwarder's memory. Allocations made
/// inside [`untracked`] (the driver's own logs) are not counted.
pub struct CountingAlloc;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    static UNTRACKED: Cell<bool> = const { Cell::new(false) };
}

fn tracked() -> bool {
    UNTRACKED.try_with(|u| !u.get()).unwrap_or(false)
}

fn add(delta: isize) {
    let live = LIVE.fetch_add(delta, Ordering::Relaxed) + delta;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && tracked() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && tracked() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        if tracked() {
            add(-(layout.size() as isize));
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && tracked() {
            add(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Runs `f` with the allocation counter off on this thread.
pub fn untracked<T>(f: impl FnOnce() -> T) -> T {
    UNTRACKED.with(|u| u.set(true));
    let out = f();
    UNTRACKED.with(|u| u.set(false));
    out
}

/// Starts a measurement: the peak is reset to the bytes live now, which are returned.
pub fn memory_baseline() -> isize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

/// The highest count of live bytes since [`memory_baseline`].
pub fn memory_peak() -> isize {
    PEAK.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_decoder_basics() {
        let mut wire = fragments(b"abcdefg", 3);
        wire.extend(fragments(b"xy", 10));
        let d = reference_records(&wire, 100, true);
        assert_eq!(d.messages, vec![b"abcdefg".to_vec(), b"xy".to_vec()]);
        assert_eq!(d.end, Ok(()));
        let d = reference_records(&wire[..wire.len() - 1], 100, true);
        assert_eq!(d.end, Err(RefError::Truncated { buffered: 5 }));
        assert_eq!(
            reference_records(&wire, 5, false).end,
            Err(RefError::RecordTooLarge { size: 6, max: 5 })
        );
    }

    #[test]
    fn reframe_agrees_with_the_reference_decoder() {
        let mut wire = fragments(b"abcdefg", 3);
        wire.extend(fragments(b"xy", 10));
        wire.extend(fragments(b"partial", 2));
        for cut in 0..=wire.len() {
            for max in [1, 5, 7, 100] {
                for eof in [false, true] {
                    let d = reference_records(&wire[..cut], max, eof);
                    let r = reframe(&wire[..cut], max, eof);
                    assert_eq!(
                        (r.wire, r.records, r.end),
                        (d.wire(), d.messages.len(), d.end)
                    );
                }
            }
        }
    }

    #[test]
    fn group_input_round_trips() {
        let input = GroupInput {
            max_record_size: 300,
            duplex_capacity: 17,
            legs: 3,
            backoff_first: true,
            server_timeout_ms: Some(1000),
            pending: vec![4, 5],
            ops: vec![
                (0, GroupOp::Write(vec![1, 2, 3])),
                (
                    2,
                    GroupOp::WriteRecords {
                        count: 9,
                        len: 40,
                        fragments: 3,
                        flip: true,
                    },
                ),
                (3, GroupOp::Read(5)),
                (1, GroupOp::ShutdownWrite),
                (0, GroupOp::Drop),
                (0, GroupOp::Sleep(7)),
                (2, GroupOp::Quiesce),
            ],
        };
        assert_eq!(GroupInput::parse(&input.encode()), input);
        assert!(is_subsequence(&[1, 3], &[1, 2, 3]) && !is_subsequence(&[3, 1], &[1, 2, 3]));
    }

    #[test]
    fn cert_input_round_trips() {
        let input = CertInput {
            sign: true,
            build: true,
            time: 0x1234_5678,
            backdate: 900,
            lifetime: 10800,
            access_key_id: "AKIDEXAMPLE".into(),
            session_token: Some("token".into()),
            fs_id: "fs-0123456789abcdef0".into(),
            access_point: Some(String::new()),
            text: "20260415T123456Z".into(),
            tlv_tag: 0x30,
            tlv_content: vec![0xff, 0, 0xff],
            ..CertInput::default()
        };
        assert_eq!(CertInput::parse(&input.encode()), input);
    }

    #[test]
    fn forward_input_round_trips() {
        let input = ForwardInput {
            max_record_size: 1000,
            duplex_capacity: 64,
            final_close: Side::Server,
            pending: vec![1, 2, 3],
            ops: vec![
                Op::Write(Side::Client, vec![9; 10]),
                Op::WriteRecords {
                    side: Side::Server,
                    count: 3,
                    len: 100,
                    fragments: 2,
                },
                Op::Read(Side::Client, 7),
                Op::ShutdownWrite(Side::Server),
                Op::Drop(Side::Client),
                Op::Sleep(5),
                Op::Quiesce,
            ],
        };
        assert_eq!(ForwardInput::parse(&input.encode()), input);
    }
}
