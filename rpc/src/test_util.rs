//! RPC bytes built by hand for tests and fuzz targets (feature `test-util`): fragments with
//! their record marks, NFSv4 COMPOUND calls, framed replies. One copy here instead of one per
//! test file.

use crate::message::{AcceptStat, CallHeader, ReplyHeader, RpcMessage};
use crate::nfs4;
use crate::record::{FRAGMENT_SIZE_MASK, LAST_FRAGMENT, Record};

/// One fragment: its record mark (`last` set or not) and `payload`. The length is masked to
/// the mark's 31 bits, so any payload makes a fragment (a wrong one when longer).
pub fn fragment(last: bool, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32 & FRAGMENT_SIZE_MASK;
    let mut out = (len | if last { LAST_FRAGMENT } else { 0 })
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(payload);
    out
}

/// `message` in fragments of the given sizes (cycled, each at least one byte; no sizes: one
/// fragment), the last one marked as such. An empty `message` makes no fragment.
pub fn fragmented(message: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = message;
    for turn in 0.. {
        if rest.is_empty() {
            break;
        }
        let size = sizes.get(turn % sizes.len().max(1)).copied();
        let (piece, tail) = rest.split_at(size.unwrap_or(rest.len()).clamp(1, rest.len()));
        rest = tail;
        out.extend(fragment(rest.is_empty(), piece));
    }
    out
}

/// An NFSv4 COMPOUND call: `tag`, `minor` version, then these operation numbers, each
/// followed by four bytes standing in for its arguments.
pub fn compound_call(xid: u32, tag: &[u8], minor: u32, ops: &[u32]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend((tag.len() as u32).to_be_bytes());
    body.extend(tag);
    body.resize(body.len() + (4 - tag.len() % 4) % 4, 0);
    body.extend(minor.to_be_bytes());
    body.extend((ops.len() as u32).to_be_bytes());
    for op in ops {
        body.extend(op.to_be_bytes());
        body.extend([0xee; 4]);
    }
    let header = CallHeader::new(nfs4::PROGRAM, nfs4::VERSION, nfs4::PROC_COMPOUND);
    RpcMessage::call(xid, header)
        .encode_with_body(&body)
        .expect("a COMPOUND header with AUTH_NONE encodes")
}

/// An NFS v4 NULL call framed as one record.
pub fn null_call_record(xid: u32) -> Record {
    Record::from_message(&nfs4::null_call(xid)).expect("a NULL call fits a record")
}

/// An accepted reply with `stat` and no results, framed as one record.
pub fn reply_record(xid: u32, stat: AcceptStat) -> Record {
    let message = RpcMessage::reply(xid, ReplyHeader::accepted(stat))
        .encode()
        .expect("an AUTH_NONE reply header encodes");
    Record::from_message(&message).expect("a reply header fits a record")
}
