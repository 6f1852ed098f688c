//! The few DER encodings the IAM extensions need, written by hand so that every byte is
//! visible (the extensions must match efs-utils' openssl output exactly), plus a minimal
//! reader for a SubjectPublicKeyInfo.

/// ASN.1 universal tags used by the extensions.
pub mod tag {
    /// `INTEGER` (universal 2).
    pub const INTEGER: u8 = 0x02;
    /// `BIT STRING` (universal 3): the subjectPublicKey of a SubjectPublicKeyInfo.
    pub const BIT_STRING: u8 = 0x03;
    /// `OCTET STRING` (universal 4): the signature in extension 7.2, the subjectKeyIdentifier.
    pub const OCTET_STRING: u8 = 0x04;
    /// `UTF8String` (universal 12): the text of every efs-utils extension.
    pub const UTF8_STRING: u8 = 0x0c;
    /// `UTCTime` (universal 23): the signing time in extension 7.2 (`YYMMDDHHMMSSZ`).
    pub const UTC_TIME: u8 = 0x17;
    /// `SEQUENCE` (universal 16, constructed).
    pub const SEQUENCE: u8 = 0x30;
    /// `[0]` constructed, context-specific (EXPLICIT tagging).
    pub const CONTEXT_0: u8 = 0xa0;
}

/// One TLV: `tag`, the definite length (short or long form), `content`.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A `UTF8String` TLV of `s`.
pub fn utf8_string(s: &str) -> Vec<u8> {
    tlv(tag::UTF8_STRING, s.as_bytes())
}

/// An `OCTET STRING` TLV of `bytes`.
pub fn octet_string(bytes: &[u8]) -> Vec<u8> {
    tlv(tag::OCTET_STRING, bytes)
}

/// A SEQUENCE of already-encoded elements.
pub fn sequence(elements: &[&[u8]]) -> Vec<u8> {
    tlv(tag::SEQUENCE, &elements.concat())
}

/// Reads one TLV from the front of `input`: `(tag, content, rest)`. Only definite lengths,
/// single-byte tags; `None` on anything malformed or truncated.
pub fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > size_of::<usize>() || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The subjectPublicKey of a DER SubjectPublicKeyInfo: the BIT STRING's content without its
/// unused-bits byte (for RSA, the DER `RSAPublicKey`). This is what efs-utils hashes.
pub fn subject_public_key(spki: &[u8]) -> Option<&[u8]> {
    let (t, body, _) = read_tlv(spki)?;
    if t != tag::SEQUENCE {
        return None;
    }
    let (t, _algorithm, rest) = read_tlv(body)?;
    if t != tag::SEQUENCE {
        return None;
    }
    let (t, bits, _) = read_tlv(rest)?;
    match bits.split_first() {
        Some((0, key)) if t == tag::BIT_STRING => Some(key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lengths() {
        assert_eq!(tlv(0x04, b"ab"), vec![0x04, 2, b'a', b'b']);
        let long = vec![0u8; 0xb9];
        assert_eq!(&tlv(0x30, &long)[..3], &[0x30, 0x81, 0xb9]);
        let longer = vec![0u8; 0x1234];
        assert_eq!(&tlv(0x30, &longer)[..4], &[0x30, 0x82, 0x12, 0x34]);
    }

    #[test]
    fn read_tlv_inverts_tlv_and_rejects_truncation() {
        for len in [0usize, 5, 127, 128, 300, 70_000] {
            let content = vec![7u8; len];
            let mut wire = tlv(0x0c, &content);
            wire.extend_from_slice(b"rest");
            let (t, c, rest) = read_tlv(&wire).unwrap();
            assert_eq!((t, c, rest), (0x0c, &content[..], &b"rest"[..]));
            assert!(read_tlv(&wire[..wire.len() - 5]).is_none());
        }
        assert!(read_tlv(&[]).is_none());
        assert!(read_tlv(&[0x30]).is_none());
        assert!(read_tlv(&[0x30, 0x80]).is_none(), "indefinite length");
        assert!(read_tlv(&[0x30, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9]).is_none());
    }

    #[test]
    fn subject_public_key_needs_the_spki_shape() {
        let spki = sequence(&[&sequence(&[]), &tlv(tag::BIT_STRING, &[0, 1, 2, 3])]);
        assert_eq!(subject_public_key(&spki), Some(&[1u8, 2, 3][..]));
        let unused_bits = sequence(&[&sequence(&[]), &tlv(tag::BIT_STRING, &[1, 1, 2, 3])]);
        assert_eq!(subject_public_key(&unused_bits), None);
        assert_eq!(subject_public_key(b"\x04\x00"), None);
    }
}
