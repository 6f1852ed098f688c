//! XDR (RFC 4506) primitives, kept behind this crate's own API.
//!
//! The payload types implement `xdr-codec`'s `Pack`/`Unpack` traits, as the project's design
//! asks. `xdr-codec` 0.4 is a 2017, sync-only crate with two traps on untrusted input, so the
//! variable-length and fixed-length opaque readers here are written by hand:
//!
//! * `unpack_opaque_flex` calls `Vec::with_capacity(len)` with the length read from the wire
//!   before checking that the bytes exist (a 4-byte input can ask for 4 GiB), and accepts a short
//!   read silently (a truncated opaque decodes "successfully").
//! * `unpack_opaque_array` loops forever when the input ends early (`read` returning 0).
//!
//! Everything else (integers, the `Pack` side) is the crate's own code. Its `Error` type
//! (error-chain) never leaves this module: callers see [`XdrError`].

use std::io::{Read, Write};

use thiserror::Error;
pub use xdr_codec::{Pack, Unpack};

/// A decoding or encoding failure of XDR data.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum XdrError {
    /// The input ended before the value was complete.
    #[error("XDR data ends early (truncated message)")]
    Truncated,
    /// A variable-length item is longer than its declared maximum.
    #[error("XDR length {0} exceeds the declared maximum")]
    TooLong(usize),
    /// A discriminant (enum or union arm) has a value the protocol does not define.
    #[error("XDR {what} has undefined value {value}")]
    BadDiscriminant {
        /// What kind of discriminant: `"enum"` or `"union arm"`.
        what: &'static str,
        /// The value read.
        value: i64,
    },
    /// Bytes were left over after the value.
    #[error("{0} trailing bytes after the XDR value")]
    Trailing(usize),
    /// Any other failure reported by the XDR codec.
    #[error("XDR codec error: {0}")]
    Codec(String),
}

/// The `xdr-codec` result type: its error is error-chain's, converted at this boundary.
pub type CodecResult<T> = xdr_codec::Result<T>;

/// Converts an `xdr-codec` error into ours.
pub(crate) fn from_codec(err: xdr_codec::Error) -> XdrError {
    use xdr_codec::ErrorKind;
    match err.kind() {
        ErrorKind::IOError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            XdrError::Truncated
        }
        ErrorKind::InvalidLen(len) => XdrError::TooLong(*len),
        ErrorKind::InvalidCase(v) => XdrError::BadDiscriminant {
            what: "union arm",
            value: i64::from(*v),
        },
        ErrorKind::InvalidEnum(v) => XdrError::BadDiscriminant {
            what: "enum",
            value: i64::from(*v),
        },
        _ => XdrError::Codec(err.to_string()),
    }
}

fn eof() -> xdr_codec::Error {
    std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()
}

fn too_long(len: usize) -> xdr_codec::Error {
    xdr_codec::Error::invalidlen(len)
}

/// Number of zero bytes that pad `len` bytes to a multiple of four.
pub fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Reads one `u32` (big-endian, as every XDR integer).
pub fn unpack_u32<R: Read>(input: &mut R) -> CodecResult<u32> {
    u32::unpack(input).map(|(v, _)| v)
}

/// Reads a variable-length opaque (`opaque x<max>`): a length, the bytes, then padding.
///
/// Allocates only after the bytes are known to be present, and never more than `max`.
pub fn unpack_opaque_flex(input: &mut &[u8], max: usize) -> CodecResult<Vec<u8>> {
    let len = unpack_u32(input)? as usize;
    if len > max {
        return Err(too_long(len));
    }
    let padded = len + padding(len);
    if input.len() < padded {
        return Err(eof());
    }
    let (bytes, rest) = input.split_at(padded);
    *input = rest;
    Ok(bytes[..len].to_vec())
}

/// Reads a fixed-length opaque (`opaque x[N]`) and its padding.
pub fn unpack_opaque_fixed<const N: usize>(input: &mut &[u8]) -> CodecResult<[u8; N]> {
    let padded = N + padding(N);
    if input.len() < padded {
        return Err(eof());
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&input[..N]);
    *input = &input[padded..];
    Ok(out)
}

/// Reads an XDR `string<max>`. Invalid UTF-8 is replaced, not rejected: these strings are
/// diagnostics from a server, and a replacement character is more useful than an error.
pub fn unpack_string_lossy(input: &mut &[u8], max: usize) -> CodecResult<String> {
    let bytes = unpack_opaque_flex(input, max)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Writes a variable-length opaque, refusing one longer than `max`.
pub fn pack_opaque_flex<W: Write>(bytes: &[u8], max: usize, out: &mut W) -> CodecResult<usize> {
    xdr_codec::pack_opaque_flex(bytes, Some(max), out)
}

/// Writes a fixed-length opaque and its padding.
pub fn pack_opaque_fixed<W: Write>(bytes: &[u8], out: &mut W) -> CodecResult<usize> {
    xdr_codec::pack_opaque_array(bytes, bytes.len(), out)
}

/// Encodes any `Pack` value into a fresh vector.
pub fn to_vec<T: Pack<Vec<u8>>>(value: &T) -> Result<Vec<u8>, XdrError> {
    let mut out = Vec::new();
    value.pack(&mut out).map_err(from_codec)?;
    Ok(out)
}

/// Decodes a value that must span all of `bytes`.
pub fn from_slice_exact<'a, T: Unpack<&'a [u8]>>(mut bytes: &'a [u8]) -> Result<T, XdrError> {
    let (value, _) = T::unpack(&mut bytes).map_err(from_codec)?;
    if !bytes.is_empty() {
        return Err(XdrError::Trailing(bytes.len()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_flex_refuses_a_huge_length_without_allocating() {
        // Length 0xffff_fff0 with four bytes of data: must fail, not allocate 4 GiB.
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xf0, 1, 2, 3, 4];
        assert!(unpack_opaque_flex(&mut input, usize::MAX).is_err());
    }

    #[test]
    fn opaque_flex_refuses_a_short_body() {
        let mut input: &[u8] = &[0, 0, 0, 5, 1, 2, 3, 4];
        let err = from_codec(unpack_opaque_flex(&mut input, 16).unwrap_err());
        assert_eq!(err, XdrError::Truncated);
    }

    #[test]
    fn opaque_flex_round_trips_with_padding() {
        let mut out = Vec::new();
        pack_opaque_flex(b"abcde", 16, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 5, b'a', b'b', b'c', b'd', b'e', 0, 0, 0]);
        let mut input = &out[..];
        assert_eq!(unpack_opaque_flex(&mut input, 16).unwrap(), b"abcde");
        assert!(input.is_empty());
    }

    #[test]
    fn opaque_fixed_stops_at_the_end_of_input() {
        let mut input: &[u8] = &[1, 2, 3];
        assert!(unpack_opaque_fixed::<64>(&mut input).is_err());
    }

    #[test]
    fn opaque_flex_over_max_is_refused_on_both_sides() {
        let mut out = Vec::new();
        assert!(pack_opaque_flex(&[0; 17], 16, &mut out).is_err());
        let mut input: &[u8] = &[0, 0, 0, 17];
        assert!(unpack_opaque_flex(&mut input, 16).is_err());
    }
}
