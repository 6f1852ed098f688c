//! efs-utils' SigV4 "request": the signature embedded in the IAM certificate.
//!
//! Nothing is sent anywhere: the mount target recomputes the same signature from the
//! certificate. The canonical request is efs-utils' (`certificate_utils.py`), which differs
//! from standard SigV4 in one byte: there is no blank line between the headers and the signed
//! header list. That is why `aws_sigv4::http_request::sign` cannot be used (it builds the
//! standard form and gives another signature); only its HMAC key derivation and final HMAC are.
//!
//! ```text
//! GET
//! /
//! Action=Connect&PublicKeyHash=…&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=…
//! host:fs-0123456789abcdef0
//! host
//! e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
//! ```

use ring::digest::{SHA256, digest};
use ring::hmac;
use zeroize::Zeroizing;

use super::signing_time::SigningTime;

/// `X-Amz-Algorithm`.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// `X-Amz-Expires`: how long the signature is valid, in seconds (a day).
pub const EXPIRES_SECS: u64 = 86_400;

/// Everything signed, except the secret key. `Debug` shows the session token's length only.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningRequest {
    /// The access key id, the first element of `X-Amz-Credential`.
    pub access_key_id: String,
    /// The session token of temporary credentials. It is part of the signed query, so it is
    /// as sensitive as the credentials: never log a [`SigningRequest`]'s canonical request.
    pub session_token: Option<String>,
    /// The AWS region of the credential scope (`X-Amz-Credential`).
    pub region: String,
    /// The SigV4 service name: `s3files` or `elasticfilesystem`.
    pub service: String,
    /// The SigV4 `host`: the file system id, not a DNS name.
    pub fs_id: String,
    /// Lower-case hex SHA-1 of the certificate's subjectPublicKey.
    pub public_key_hash: String,
    /// `X-Amz-Date`, and the date of the credential scope.
    pub time: SigningTime,
}

impl std::fmt::Debug for SigningRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningRequest")
            .field("access_key_id", &self.access_key_id)
            .field("session_token", &redacted(self.session_token.as_deref()))
            .field("region", &self.region)
            .field("service", &self.service)
            .field("fs_id", &self.fs_id)
            .field("public_key_hash", &self.public_key_hash)
            .field("time", &self.time)
            .finish()
    }
}

/// How a session token appears in `Debug` output: its length, never its text.
pub fn redacted(token: Option<&str>) -> Option<String> {
    token.map(|t| format!("<redacted, {} characters>", t.len()))
}

impl SigningRequest {
    /// `date/region/service/aws4_request`.
    pub fn credential_scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.time.date_stamp(),
            self.region,
            self.service
        )
    }

    /// The query string: parameters sorted by name (they are listed in order here), joined by
    /// `&`, values encoded with Python's `quote_plus` and nothing else.
    pub fn canonical_query(&self) -> String {
        let credential = format!("{}/{}", self.access_key_id, self.credential_scope());
        let mut params = vec![
            ("Action", "Connect".to_string()),
            ("PublicKeyHash", quote_plus(&self.public_key_hash)),
            ("X-Amz-Algorithm", ALGORITHM.to_string()),
            ("X-Amz-Credential", quote_plus(&credential)),
            ("X-Amz-Date", quote_plus(&self.time.amz_date())),
            ("X-Amz-Expires", EXPIRES_SECS.to_string()),
        ];
        if let Some(token) = &self.session_token {
            params.push(("X-Amz-Security-Token", quote_plus(token)));
        }
        params.push(("X-Amz-SignedHeaders", "host".to_string()));
        params.sort_by(|a, b| a.0.cmp(b.0));
        params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// efs-utils' canonical request (note: no blank line after `host:…`).
    pub fn canonical_request(&self) -> String {
        format!(
            "GET\n/\n{}\nhost:{}\nhost\n{}",
            self.canonical_query(),
            self.fs_id,
            sha256_hex(b"")
        )
    }

    /// The string to sign (no trailing newline).
    pub fn string_to_sign(&self) -> String {
        format!(
            "{ALGORITHM}\n{}\n{}\n{}",
            self.time.amz_date(),
            self.credential_scope(),
            sha256_hex(self.canonical_request().as_bytes())
        )
    }

    /// The signature: 64 lower-case hex characters.
    pub fn signature(&self, secret_access_key: &str) -> String {
        let key = self.signing_key(secret_access_key);
        hex::encode(hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, key.as_ref()),
            self.string_to_sign().as_bytes(),
        ))
    }

    /// SigV4's derived signing key, `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region),
    /// service), "aws4_request")`. Computed here rather than by `aws_sigv4`, whose copy of
    /// `"AWS4" + secret` and whose derived key are never wiped: both of ours are zeroed when
    /// dropped (ring's HMAC state is ring's to manage).
    pub fn signing_key(&self, secret_access_key: &str) -> Zeroizing<[u8; 32]> {
        let mut secret = Zeroizing::new(Vec::with_capacity(4 + secret_access_key.len()));
        secret.extend_from_slice(b"AWS4");
        secret.extend_from_slice(secret_access_key.as_bytes());
        let mut key = Zeroizing::new([0u8; 32]);
        let date = self.time.date_stamp();
        key.copy_from_slice(
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &secret), date.as_bytes()).as_ref(),
        );
        for part in [self.region.as_str(), self.service.as_str(), "aws4_request"] {
            let next = hmac::sign(
                &hmac::Key::new(hmac::HMAC_SHA256, key.as_ref()),
                part.as_bytes(),
            );
            key.copy_from_slice(next.as_ref());
        }
        key
    }

    /// The canonical request with the session token replaced by a placeholder, for display
    /// (`efs-proxy cert --explain`). The string to sign still hashes the real one.
    pub fn canonical_request_redacted(&self) -> String {
        let canonical = self.canonical_request();
        match &self.session_token {
            Some(token) => canonical.replace(
                &quote_plus(token),
                &format!("<session token, {} characters, redacted>", token.len()),
            ),
            None => canonical,
        }
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest(&SHA256, bytes))
}

/// Python's `urllib.parse.quote_plus(s)` (with its default `safe=''`): ASCII letters, digits
/// and `_.-~` stay, a space becomes `+`, every other byte of the UTF-8 becomes `%XX`.
pub fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(token: Option<&str>) -> SigningRequest {
        SigningRequest {
            access_key_id: "AKIDEXAMPLE".into(),
            session_token: token.map(str::to_string),
            region: "us-east-1".into(),
            service: "s3files".into(),
            fs_id: "fs-0123456789abcdef0".into(),
            public_key_hash: "60cd2bc52a8bb9fc54bc0201542405287afde641".into(),
            time: SigningTime::parse_amz_date("20260102T030405Z").unwrap(),
        }
    }

    #[test]
    fn quote_plus_matches_python() {
        assert_eq!(quote_plus("a/b+c=d e~f_g.h-i"), "a%2Fb%2Bc%3Dd+e~f_g.h-i");
        assert_eq!(quote_plus("é"), "%C3%A9");
        assert_eq!(quote_plus(""), "");
    }

    /// The worked example of docs/protocol.md §5.4 (checked against efs-utils).
    #[test]
    fn canonical_request_of_the_spec_example() {
        let r = request(Some("IQoJb3JpZ2luX2VjEXAMPLE/TOKEN+abc=="));
        assert_eq!(
            r.canonical_request(),
            "GET\n/\nAction=Connect&PublicKeyHash=60cd2bc52a8bb9fc54bc0201542405287afde641&\
             X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20260102%2F\
             us-east-1%2Fs3files%2Faws4_request&X-Amz-Date=20260102T030405Z&X-Amz-Expires=86400&\
             X-Amz-Security-Token=IQoJb3JpZ2luX2VjEXAMPLE%2FTOKEN%2Babc%3D%3D&\
             X-Amz-SignedHeaders=host\nhost:fs-0123456789abcdef0\nhost\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(r.string_to_sign().starts_with(
            "AWS4-HMAC-SHA256\n20260102T030405Z\n20260102/us-east-1/s3files/aws4_request\n"
        ));
    }

    #[test]
    fn signature_is_64_hex_and_depends_on_every_input() {
        let base = request(None);
        let sig = base.signature("secret");
        assert_eq!(sig.len(), 64);
        assert!(
            sig.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(base.signature("other"), sig);
        let variants = [
            SigningRequest {
                service: "elasticfilesystem".into(),
                ..base.clone()
            },
            SigningRequest {
                region: "us-west-2".into(),
                ..base.clone()
            },
            SigningRequest {
                fs_id: "fs-ffffffffffffffff0".into(),
                ..base.clone()
            },
            SigningRequest {
                session_token: Some("t".into()),
                ..base.clone()
            },
            SigningRequest {
                public_key_hash: "00".into(),
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.signature("secret"), sig, "{v:?}");
        }
    }

    #[test]
    fn the_signing_key_is_sigv4s_and_is_wiped_on_drop() {
        let r = request(None);
        let key: Zeroizing<[u8; 32]> = r.signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let theirs = aws_sigv4::sign::v4::generate_signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            r.time.system_time(),
            &r.region,
            &r.service,
        );
        assert_eq!(key.as_ref(), theirs.as_ref());
        assert_eq!(
            r.signature("secret"),
            aws_sigv4::sign::v4::calculate_signature(
                aws_sigv4::sign::v4::generate_signing_key(
                    "secret",
                    r.time.system_time(),
                    &r.region,
                    &r.service
                ),
                r.string_to_sign().as_bytes()
            )
        );
    }

    #[test]
    fn debug_never_shows_the_session_token() {
        let r = request(Some("IQoJb3JpZ2luX2VjEXAMPLE/TOKEN+abc=="));
        let shown = format!("{r:?}");
        assert!(!shown.contains("TOKEN"), "{shown}");
        assert!(shown.contains("<redacted, 35 characters>"), "{shown}");
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
    }

    #[test]
    fn redaction_hides_the_token_only() {
        let r = request(Some("IQoJb3JpZ2luX2VjEXAMPLE/TOKEN+abc=="));
        let shown = r.canonical_request_redacted();
        assert!(!shown.contains("TOKEN"), "{shown}");
        assert!(shown.contains("X-Amz-Security-Token=<session token, 35 characters, redacted>"));
        assert_eq!(
            request(None).canonical_request_redacted(),
            request(None).canonical_request()
        );
    }
}
