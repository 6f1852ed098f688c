//! The reference record-marking decoder: the oracle the real codec and the forwarder are
//! compared with, written from RFC 5531 §11 as plainly as possible.

use crate::{FRAGMENT_SIZE_MASK, LAST_FRAGMENT};

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
