//! The one thing the proxy reads inside NFS traffic: whether an NFSv4.1+ COMPOUND starts with
//! SEQUENCE.
//!
//! RFC 8881 §2.10.3.1 binds connections to sessions: a COMPOUND that does not begin with
//! SEQUENCE (EXCHANGE_ID, CREATE_SESSION, DESTROY_SESSION, BIND_CONN_TO_SESSION,
//! DESTROY_CLIENTID …) may be refused on a connection the server has not bound to the session.
//! A proxy spreading one client connection over several server connections therefore sends
//! those on the connection that carried the client's first records. Only the RPC call header
//! and the first words of the COMPOUND arguments are read: no allocation, no NFS decoding, at
//! most [`MAX_TAG_BYTES`] of tag skipped.

/// The NFS program number.
pub const PROGRAM: u32 = 100_003;
/// NFS version 4.
pub const VERSION: u32 = 4;
/// `NFSPROC4_NULL`: the call every NFS server answers, with no arguments.
pub const PROC_NULL: u32 = 0;
/// `NFSPROC4_COMPOUND`.
pub const PROC_COMPOUND: u32 = 1;
/// `OP_SEQUENCE` (RFC 8881 §18.46).
pub const OP_SEQUENCE: u32 = 53;
/// Longest COMPOUND tag looked past; a longer one is not read (the call is then treated as not
/// led by SEQUENCE). Linux sends an empty tag.
pub const MAX_TAG_BYTES: usize = 1024;
/// The highest NFSv4 minor version there is (4.2, RFC 7862).
pub const MAX_MINOR_VERSION: u32 = 2;
/// Longest credential or verifier body (RFC 5531 §8.2).
const MAX_AUTH_BYTES: usize = 400;

/// The head of an NFSv4 COMPOUND call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompoundHead {
    /// `minorversion` of the COMPOUND arguments: 0 for NFSv4.0 (RFC 7530), 1 for 4.1
    /// (RFC 8881), 2 for 4.2 (RFC 7862).
    pub minor_version: u32,
    /// The first operation's number; `None` for an empty COMPOUND.
    pub first_op: Option<u32>,
}

impl CompoundHead {
    /// True for a COMPOUND of NFSv4.1 or 4.2 that does not start with SEQUENCE: it must go on
    /// a connection bound to the client's session. (NFSv4.0 has no sessions; a minor version
    /// past 4.2 is refused by the server wherever it lands.)
    pub fn needs_bound_connection(&self) -> bool {
        (1..=MAX_MINOR_VERSION).contains(&self.minor_version) && self.first_op != Some(OP_SEQUENCE)
    }
}

/// Reads the head of `message` (an RPC message without its record mark) if it is an NFSv4
/// COMPOUND call; `None` for anything else, including truncated or malformed input.
pub fn compound_head(message: &[u8]) -> Option<CompoundHead> {
    let mut r = Reader(message);
    let _xid = r.word()?;
    let (kind, rpc_version) = (r.word()?, r.word()?);
    let (program, version, procedure) = (r.word()?, r.word()?, r.word()?);
    if (kind, rpc_version, program, version, procedure) != (0, 2, PROGRAM, VERSION, PROC_COMPOUND) {
        return None;
    }
    for _ in 0..2 {
        // credential, verifier: flavor, opaque body
        let _flavor = r.word()?;
        r.skip_opaque(MAX_AUTH_BYTES)?;
    }
    r.skip_opaque(MAX_TAG_BYTES)?;
    let minor_version = r.word()?;
    let count = r.word()?;
    let first_op = if count == 0 { None } else { Some(r.word()?) };
    Some(CompoundHead {
        minor_version,
        first_op,
    })
}

/// An NFS v4 NULL call with AUTH_NONE (without its record mark): the smallest question an NFS
/// server answers.
pub fn null_call(xid: u32) -> Vec<u8> {
    // xid, CALL, RPC version 2, program, version, procedure, then AUTH_NONE credential and
    // verifier (flavor 0, empty body).
    [xid, 0, 2, PROGRAM, VERSION, PROC_NULL, 0, 0, 0, 0]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect()
}

/// A cursor over XDR words that fails, never panics, at the end of its input.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn word(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*head))
    }

    /// Skips a variable-length opaque of at most `max` bytes and its padding.
    fn skip_opaque(&mut self, max: usize) -> Option<()> {
        let len = usize::try_from(self.word()?).ok()?;
        if len > max {
            return None;
        }
        let padded = len.checked_add(3)? & !3;
        self.0 = self.0.get(padded..)?;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CallHeader, RpcMessage};

    fn compound(tag: &[u8], minor: u32, ops: &[u32]) -> Vec<u8> {
        crate::test_util::compound_call(9, tag, minor, ops)
    }

    #[test]
    fn the_null_call_is_what_the_encoder_writes() {
        let encoded = RpcMessage::call(7, CallHeader::new(PROGRAM, VERSION, PROC_NULL))
            .encode()
            .unwrap();
        assert_eq!(null_call(7), encoded);
    }

    #[test]
    fn the_first_operation_is_read_past_the_tag() {
        let head = compound_head(&compound(b"tag", 1, &[OP_SEQUENCE, 22])).unwrap();
        assert_eq!((head.minor_version, head.first_op), (1, Some(OP_SEQUENCE)));
        assert!(!head.needs_bound_connection());
        for op in [
            44, /* DESTROY_SESSION */
            43, /* CREATE_SESSION */
            42, 41, 57,
        ] {
            let head = compound_head(&compound(b"", 2, &[op])).unwrap();
            assert!(head.needs_bound_connection(), "op {op}");
        }
        let empty = compound_head(&compound(b"", 1, &[])).unwrap();
        assert_eq!(empty.first_op, None);
        assert!(empty.needs_bound_connection());
        let v40 = compound_head(&compound(b"", 0, &[22])).unwrap();
        assert!(!v40.needs_bound_connection(), "NFSv4.0 has no sessions");
        let v43 = compound_head(&compound(b"", 3, &[44])).unwrap();
        assert!(!v43.needs_bound_connection(), "no such minor version");
    }

    #[test]
    fn other_calls_and_malformed_input_have_no_head() {
        assert_eq!(compound_head(&null_call(1)), None);
        let message = compound(b"tag", 1, &[OP_SEQUENCE]);
        for len in 0..message.len() - 4 {
            assert_eq!(compound_head(&message[..len]), None, "prefix {len}");
        }
        let mut huge_tag = message.clone();
        huge_tag[40..44].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(compound_head(&huge_tag), None);
        let long = compound(&[b'x'; MAX_TAG_BYTES + 1], 1, &[OP_SEQUENCE]);
        assert_eq!(compound_head(&long), None);
    }
}
