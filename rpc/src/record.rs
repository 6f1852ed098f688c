//! Record marking (RFC 5531 §11): how RPC messages are delimited on a TCP stream.
//!
//! A *record* is one RPC message. On the wire it is a sequence of *fragments*, each preceded by
//! a 4-byte big-endian *record mark*: the top bit says "last fragment of the record", the other
//! 31 bits give the fragment's length.
//!
//! [`RecordCodec`] is a `tokio_util::codec` decoder and encoder. Decoded records are returned as
//! [`Record`]s that keep their wire form (a single record mark followed by the message), so a
//! proxy can forward them with no copy: a single-fragment record is split off the read buffer
//! as-is; a multi-fragment record is reassembled once into a single fragment, as AWS's
//! efs-proxy does.
//!
//! Limits are enforced before any allocation: a fragment or record larger than the configured
//! maximum is refused from its header alone, and the decoder never reserves more than
//! `4 + max_record_size` bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::peek::{HeaderPeek, peek_header};
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder};

/// The "last fragment" bit of a record mark.
pub const LAST_FRAGMENT: u32 = 0x8000_0000;
/// The length bits of a record mark.
pub const FRAGMENT_SIZE_MASK: u32 = 0x7fff_ffff;
/// Size of a record mark on the wire.
pub const RECORD_MARK_LEN: usize = 4;
/// Default maximum record size: Linux's `RPCSVC_MAXPAYLOAD` (1 MiB) plus one 4 KiB page for
/// headers, the same limit AWS's efs-proxy applies (`RPC_MAX_SIZE`).
pub const DEFAULT_MAX_RECORD_SIZE: usize = 1024 * 1024 + 4 * 1024;

/// A record mark: the length of the fragment that follows and whether it ends the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMark {
    /// Length in bytes of the fragment after the mark (the low 31 bits).
    pub len: usize,
    /// Whether this fragment ends the record (the top bit).
    pub last: bool,
}

impl RecordMark {
    /// Reads the record mark at the front of `bytes`; `None` for fewer than four bytes.
    pub fn peek(bytes: &[u8]) -> Option<RecordMark> {
        let (mark, _) = bytes.split_first_chunk::<RECORD_MARK_LEN>()?;
        let mark = u32::from_be_bytes(*mark);
        Some(RecordMark {
            len: (mark & FRAGMENT_SIZE_MASK) as usize,
            last: mark & LAST_FRAGMENT != 0,
        })
    }
}

/// Why a byte stream is not a valid sequence of records.
#[derive(Debug, Error)]
pub enum RecordError {
    /// A fragment header announced zero bytes. Legal in theory, but no RPC implementation sends
    /// it and accepting it would let a peer spin the decoder without progress.
    #[error("record mark announces a zero-length fragment")]
    ZeroSizeFragment,
    /// A fragment is longer than the maximum record size.
    #[error("fragment of {size} bytes exceeds the maximum record size of {max} bytes")]
    FragmentTooLarge {
        /// The fragment's length, as its record mark announces it.
        size: usize,
        /// The limit it exceeds: the maximum record size (or, framing a message, the 31 bits
        /// of a record mark).
        max: usize,
    },
    /// The fragments of one record add up to more than the maximum record size.
    #[error("record of at least {size} bytes exceeds the maximum record size of {max} bytes")]
    RecordTooLarge {
        /// The record's message bytes so far, including the fragment that crossed the limit.
        size: usize,
        /// The configured maximum record size.
        max: usize,
    },
    /// The stream ended in the middle of a record.
    #[error("stream ended inside a record ({buffered} bytes of an incomplete record buffered)")]
    Truncated {
        /// Bytes of the incomplete record (marks included) read before the end.
        buffered: usize,
    },
    /// The underlying stream failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// One complete RPC record in wire form: a single last-fragment record mark, then the message.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    wire: Bytes,
}

impl Record {
    /// Frames `message` as a single-fragment record (copies it once), refusing one whose
    /// length does not fit in the 31 bits of a record mark.
    pub fn from_message(message: &[u8]) -> Result<Record, RecordError> {
        if message.is_empty() {
            return Err(RecordError::ZeroSizeFragment);
        }
        let len = u32::try_from(message.len())
            .ok()
            .filter(|len| *len <= FRAGMENT_SIZE_MASK)
            .ok_or(RecordError::FragmentTooLarge {
                size: message.len(),
                max: FRAGMENT_SIZE_MASK as usize,
            })?;
        let mut wire = BytesMut::with_capacity(RECORD_MARK_LEN + message.len());
        wire.put_u32(len | LAST_FRAGMENT);
        wire.put_slice(message);
        Ok(Record {
            wire: wire.freeze(),
        })
    }

    /// The RPC message, without the record mark.
    pub fn message(&self) -> &[u8] {
        &self.wire[RECORD_MARK_LEN..]
    }

    /// The whole record as sent on the wire (record mark included). Cheap to clone.
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }

    /// Consumes the record, returning its wire bytes.
    pub fn into_wire(self) -> Bytes {
        self.wire
    }

    /// Length of the RPC message (without the record mark).
    pub fn message_len(&self) -> usize {
        self.wire.len() - RECORD_MARK_LEN
    }

    /// The xid and message type, if the message starts like a call or a reply.
    pub fn peek(&self) -> Option<HeaderPeek> {
        peek_header(self.message())
    }

    /// The RPC transaction id, if the message is long enough to carry one.
    pub fn xid(&self) -> Option<u32> {
        self.message()
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("xid", &self.xid())
            .field("message_len", &self.message_len())
            .finish()
    }
}

/// Decoder and encoder of record-marked RPC messages, with a maximum record size.
#[derive(Debug)]
pub struct RecordCodec {
    max_record_size: usize,
    /// Fragments of a multi-fragment record collected so far, behind a 4-byte placeholder for
    /// the record mark of the reassembled record. Empty when no record is in progress.
    partial: BytesMut,
}

impl Default for RecordCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_RECORD_SIZE)
    }
}

impl RecordCodec {
    /// A codec that refuses records whose message is longer than `max_record_size` bytes.
    /// The value is capped at the 31-bit maximum of a record mark.
    pub fn new(max_record_size: usize) -> Self {
        RecordCodec {
            max_record_size: max_record_size.min(FRAGMENT_SIZE_MASK as usize),
            partial: BytesMut::new(),
        }
    }

    /// The maximum record size this codec accepts.
    pub fn max_record_size(&self) -> usize {
        self.max_record_size
    }

    /// Bytes of an incomplete multi-fragment record held by the codec.
    fn partial_len(&self) -> usize {
        self.partial.len().saturating_sub(RECORD_MARK_LEN)
    }
}

impl Decoder for RecordCodec {
    type Item = Record;
    type Error = RecordError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Record>, RecordError> {
        loop {
            let Some(RecordMark { len: size, last }) = RecordMark::peek(src) else {
                return Ok(None);
            };

            if size == 0 {
                return Err(RecordError::ZeroSizeFragment);
            }
            let max = self.max_record_size;
            if size > max {
                return Err(RecordError::FragmentTooLarge { size, max });
            }
            let record_size = self.partial_len() + size;
            if record_size > max {
                return Err(RecordError::RecordTooLarge {
                    size: record_size,
                    max,
                });
            }

            let fragment_end = RECORD_MARK_LEN + size;
            if src.len() < fragment_end {
                // Bounded: `size <= max`, so this never asks for more than 4 + max bytes.
                src.reserve(fragment_end - src.len());
                return Ok(None);
            }

            if last && self.partial.is_empty() {
                // The common case: a whole single-fragment record, handed on without a copy.
                let wire = src.split_to(fragment_end).freeze();
                return Ok(Some(Record { wire }));
            }

            if self.partial.is_empty() {
                self.partial.reserve(RECORD_MARK_LEN + size);
                self.partial.put_u32(0); // placeholder for the reassembled record mark
            }
            self.partial
                .extend_from_slice(&src[RECORD_MARK_LEN..fragment_end]);
            src.advance(fragment_end);

            if last {
                let len = (self.partial.len() - RECORD_MARK_LEN) as u32;
                self.partial[..RECORD_MARK_LEN]
                    .copy_from_slice(&(len | LAST_FRAGMENT).to_be_bytes());
                let wire = self.partial.split().freeze();
                return Ok(Some(Record { wire }));
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Record>, RecordError> {
        match self.decode(src)? {
            Some(record) => Ok(Some(record)),
            None if src.is_empty() && self.partial.is_empty() => Ok(None),
            None => Err(RecordError::Truncated {
                buffered: src.len() + self.partial_len(),
            }),
        }
    }
}

impl Encoder<Record> for RecordCodec {
    type Error = RecordError;

    fn encode(&mut self, record: Record, dst: &mut BytesMut) -> Result<(), RecordError> {
        let size = record.message_len();
        if size > self.max_record_size {
            return Err(RecordError::RecordTooLarge {
                size,
                max: self.max_record_size,
            });
        }
        dst.extend_from_slice(record.wire());
        Ok(())
    }
}

impl Encoder<&[u8]> for RecordCodec {
    type Error = RecordError;

    /// Frames an RPC message as a single fragment.
    fn encode(&mut self, message: &[u8], dst: &mut BytesMut) -> Result<(), RecordError> {
        let size = message.len();
        if size == 0 {
            return Err(RecordError::ZeroSizeFragment);
        }
        if size > self.max_record_size {
            return Err(RecordError::RecordTooLarge {
                size,
                max: self.max_record_size,
            });
        }
        dst.reserve(RECORD_MARK_LEN + size);
        dst.put_u32(size as u32 | LAST_FRAGMENT);
        dst.put_slice(message);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::fragment;

    fn decode_all(codec: &mut RecordCodec, bytes: &[u8]) -> Result<Vec<Record>, RecordError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(record) = codec.decode_eof(&mut buf)? {
            out.push(record);
        }
        Ok(out)
    }

    #[test]
    fn single_fragment_record_is_split_without_reframing() {
        let wire = fragment(true, b"hello, rpc");
        let records = decode_all(&mut RecordCodec::default(), &wire).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].message(), b"hello, rpc");
        assert_eq!(&records[0].wire()[..], &wire[..]);
    }

    #[test]
    fn multi_fragment_record_is_reassembled_into_one_fragment() {
        let mut wire = fragment(false, b"abc");
        wire.extend(fragment(false, b"defg"));
        wire.extend(fragment(true, b"hi"));
        wire.extend(fragment(true, b"next"));
        let records = decode_all(&mut RecordCodec::default(), &wire).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].message(), b"abcdefghi");
        assert_eq!(&records[0].wire()[..], &fragment(true, b"abcdefghi")[..]);
        assert_eq!(records[1].message(), b"next");
    }

    #[test]
    fn records_decode_identically_in_any_chunking() {
        let mut wire = fragment(false, b"first-");
        wire.extend(fragment(true, b"part"));
        wire.extend(fragment(true, &[7u8; 300]));
        let expected = decode_all(&mut RecordCodec::default(), &wire).unwrap();
        for chunk in 1..wire.len() {
            let mut codec = RecordCodec::default();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(record) = codec.decode(&mut buf).unwrap() {
                    got.push(record);
                }
            }
            assert_eq!(got, expected, "chunk size {chunk}");
        }
    }

    #[test]
    fn zero_size_fragment_is_an_error() {
        let err = decode_all(&mut RecordCodec::default(), &[0x80, 0, 0, 0]).unwrap_err();
        assert!(matches!(err, RecordError::ZeroSizeFragment), "{err}");
    }

    #[test]
    fn oversized_fragment_is_refused_from_its_header_alone() {
        let mut codec = RecordCodec::new(1000);
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(
            matches!(
                err,
                RecordError::FragmentTooLarge {
                    size: 0x7fff_ffff,
                    max: 1000
                }
            ),
            "{err}"
        );
        assert!(
            buf.capacity() < 1000,
            "no allocation for a refused fragment"
        );
    }

    #[test]
    fn fragments_adding_up_past_the_limit_are_refused() {
        let mut wire = fragment(false, &[1u8; 600]);
        wire.extend(fragment(true, &[2u8; 600]));
        let err = decode_all(&mut RecordCodec::new(1000), &wire).unwrap_err();
        assert!(
            matches!(
                err,
                RecordError::RecordTooLarge {
                    size: 1200,
                    max: 1000
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn record_at_exactly_the_limit_is_accepted() {
        let wire = fragment(true, &[9u8; 1000]);
        let records = decode_all(&mut RecordCodec::new(1000), &wire).unwrap();
        assert_eq!(records[0].message_len(), 1000);
    }

    #[test]
    fn end_of_stream_inside_a_record_is_reported() {
        let mut wire = fragment(false, b"abc");
        wire.extend(&fragment(true, b"defg")[..6]);
        let err = decode_all(&mut RecordCodec::default(), &wire).unwrap_err();
        assert!(
            matches!(err, RecordError::Truncated { buffered: 9 }),
            "{err}"
        );
        let err = decode_all(&mut RecordCodec::default(), &[0x80, 0]).unwrap_err();
        assert!(
            matches!(err, RecordError::Truncated { buffered: 2 }),
            "{err}"
        );
    }

    #[test]
    fn encoder_frames_messages_and_refuses_oversized_ones() {
        let mut codec = RecordCodec::new(8);
        let mut dst = BytesMut::new();
        codec.encode(&b"12345678"[..], &mut dst).unwrap();
        assert_eq!(&dst[..], &fragment(true, b"12345678")[..]);
        assert!(codec.encode(&b"123456789"[..], &mut dst).is_err());
        assert!(codec.encode(&b""[..], &mut dst).is_err());
        let record = Record::from_message(b"123456789").unwrap();
        assert!(codec.encode(record, &mut dst).is_err());
    }

    #[test]
    fn record_round_trips_through_encoder_and_decoder() {
        let mut codec = RecordCodec::default();
        let mut dst = BytesMut::new();
        let record = Record::from_message(&[0xab; 4096]).unwrap();
        codec.encode(record.clone(), &mut dst).unwrap();
        assert_eq!(codec.decode(&mut dst).unwrap(), Some(record));
        assert!(dst.is_empty());
    }
}
