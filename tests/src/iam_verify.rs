//! What an EFS / S3 Files mount target checks in an IAM client certificate, for the fake
//! mount target: the SigV4 signature recomputed from the certificate's own public key and a
//! test secret key, the validity window, the signature's age, the file system id.
//!
//! The canonical request is rebuilt here independently of the proxy's `iam::sigv4` (only the
//! HMAC key derivation is shared, from `aws-sigv4`), and this verifier accepts the reference
//! certificates of `proxy/tests/vectors/iam/`, so proxy and verifier cannot agree on a
//! mistake.
//!
//! What a real mount target does with a bad certificate is not documented. The fake one
//! completes the TLS handshake, then answers the AWSFILE bind with `BindResponse::Error`
//! carrying the reason and closes the connection: ERROR is the protocol's one server-written
//! message, so the proxy can log why. (A TLS alert would carry no reason at all.)

use std::time::{Duration, SystemTime};

use efs_proxy::iam::SigningTime;
use efs_proxy::iam::der::{self, tag};
use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, SHA256, digest};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The OIDs of efs-utils' extensions.
pub const OID_ACCESS_POINT: &str = "1.3.6.1.4.1.4843.7.1";
pub const OID_SIGV4: &str = "1.3.6.1.4.1.4843.7.2";
pub const OID_FS_ID: &str = "1.3.6.1.4.1.4843.7.3";

/// SigV4's `X-Amz-Expires`: a signature is good for a day after its signing time.
pub const SIGNATURE_LIFETIME: Duration = Duration::from_secs(86_400);
/// Clock skew tolerated for a signing time in the future.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The mount target's side of IAM: the expected file system and the secret key of the one
/// test identity.
#[derive(Debug, Clone)]
pub struct IamVerifier {
    pub secret_access_key: String,
    /// The SigV4 service this mount target is: `s3files` or `elasticfilesystem`.
    pub service: String,
    pub region: String,
    pub fs_id: String,
    /// When set, only this access key id is known.
    pub access_key_id: Option<String>,
}

/// A certificate the verifier accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
    pub signature: String,
    pub signed_at: SigningTime,
    pub session_token: Option<String>,
    pub access_point: Option<String>,
}

/// Why a certificate was refused. The `Display` text goes to the proxy in the bind ERROR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Malformed(String),
    NoFsId,
    WrongFsId {
        presented: String,
        expected: String,
    },
    NotYetValid {
        not_before: i64,
    },
    Expired {
        not_after: i64,
    },
    NoSignature,
    UnknownAccessKey {
        presented: String,
    },
    SignatureExpired {
        signed_at: SigningTime,
    },
    SignedInTheFuture {
        signed_at: SigningTime,
    },
    WrongService {
        signed_for: String,
        expected: String,
    },
    SignatureMismatch,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |t: i64| {
            SystemTime::UNIX_EPOCH
                .checked_add(Duration::from_secs(t.max(0) as u64))
                .map(SigningTime::from_system_time)
                .map_or_else(|| t.to_string(), |s| s.to_string())
        };
        match self {
            Refusal::Malformed(why) => write!(f, "malformed client certificate: {why}"),
            Refusal::NoFsId => write!(
                f,
                "the certificate has no file system id (extension {OID_FS_ID})"
            ),
            Refusal::WrongFsId {
                presented,
                expected,
            } => write!(
                f,
                "wrong file system id: the certificate is for {presented}, this mount target serves {expected}"
            ),
            Refusal::NotYetValid { not_before } => {
                write!(
                    f,
                    "certificate not yet valid: valid from {}",
                    at(*not_before)
                )
            }
            Refusal::Expired { not_after } => {
                write!(f, "certificate expired at {}", at(*not_after))
            }
            Refusal::NoSignature => write!(
                f,
                "no IAM signature: the certificate has no SigV4 extension ({OID_SIGV4})"
            ),
            Refusal::UnknownAccessKey { presented } => {
                write!(f, "unknown access key id {presented}")
            }
            Refusal::SignatureExpired { signed_at } => write!(
                f,
                "signature expired: signed at {signed_at}, more than 86400 s ago"
            ),
            Refusal::SignedInTheFuture { signed_at } => {
                write!(
                    f,
                    "signature from the future: signed at {signed_at} (clock skew?)"
                )
            }
            Refusal::WrongService {
                signed_for,
                expected,
            } => write!(
                f,
                "wrong service: the certificate is signed for {signed_for}, this mount target is {expected}"
            ),
            Refusal::SignatureMismatch => write!(
                f,
                "signature mismatch: wrong secret access key, region or session token"
            ),
        }
    }
}

impl IamVerifier {
    /// Checks a DER client certificate at time `now`.
    pub fn verify(&self, cert_der: &[u8], now: SystemTime) -> Result<Verified, Refusal> {
        let (_, cert) = X509Certificate::from_der(cert_der)
            .map_err(|e| Refusal::Malformed(format!("not an X.509 certificate: {e}")))?;
        let extension = |oid: &str| {
            cert.extensions()
                .iter()
                .find(|e| e.oid.to_id_string() == oid)
                .map(|e| e.value)
        };

        let fs_id = utf8(extension(OID_FS_ID).ok_or(Refusal::NoFsId)?)?;
        if fs_id != self.fs_id {
            return Err(Refusal::WrongFsId {
                presented: fs_id,
                expected: self.fs_id.clone(),
            });
        }
        let access_point = extension(OID_ACCESS_POINT).map(utf8).transpose()?;

        let now_secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let validity = cert.validity();
        if now_secs < validity.not_before.timestamp() {
            return Err(Refusal::NotYetValid {
                not_before: validity.not_before.timestamp(),
            });
        }
        if now_secs > validity.not_after.timestamp() {
            return Err(Refusal::Expired {
                not_after: validity.not_after.timestamp(),
            });
        }

        let block = parse_sigv4(extension(OID_SIGV4).ok_or(Refusal::NoSignature)?)?;
        if let Some(known) = &self.access_key_id
            && *known != block.access_key_id
        {
            return Err(Refusal::UnknownAccessKey {
                presented: block.access_key_id,
            });
        }
        let signed = block.signed_at.system_time();
        if now > signed + SIGNATURE_LIFETIME {
            return Err(Refusal::SignatureExpired {
                signed_at: block.signed_at,
            });
        }
        if signed > now + MAX_SKEW {
            return Err(Refusal::SignedInTheFuture {
                signed_at: block.signed_at,
            });
        }

        let public_key_hash = hex::encode(digest(
            &SHA1_FOR_LEGACY_USE_ONLY,
            &cert.public_key().subject_public_key.data,
        ));
        let expected = self.signature(&block, &public_key_hash, &self.service);
        if expected != block.signature {
            let other = if self.service == "s3files" {
                "elasticfilesystem"
            } else {
                "s3files"
            };
            if self.signature(&block, &public_key_hash, other) == block.signature {
                return Err(Refusal::WrongService {
                    signed_for: other.to_string(),
                    expected: self.service.clone(),
                });
            }
            return Err(Refusal::SignatureMismatch);
        }
        Ok(Verified {
            access_point,
            ..block
        })
    }

    /// efs-utils' signature, computed from scratch.
    fn signature(&self, block: &Verified, public_key_hash: &str, service: &str) -> String {
        let date = &block.signed_at.amz_date();
        let scope = format!("{}/{}/{service}/aws4_request", &date[..8], self.region);
        let mut query = vec![
            "Action=Connect".to_string(),
            format!("PublicKeyHash={public_key_hash}"),
            "X-Amz-Algorithm=AWS4-HMAC-SHA256".to_string(),
            format!(
                "X-Amz-Credential={}",
                encode(&format!("{}/{scope}", block.access_key_id))
            ),
            format!("X-Amz-Date={date}"),
            "X-Amz-Expires=86400".to_string(),
        ];
        if let Some(token) = &block.session_token {
            query.push(format!("X-Amz-Security-Token={}", encode(token)));
        }
        query.push("X-Amz-SignedHeaders=host".to_string());
        let empty = hex::encode(digest(&SHA256, b""));
        let canonical = format!(
            "GET\n/\n{}\nhost:{}\nhost\n{empty}",
            query.join("&"),
            self.fs_id
        );
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            hex::encode(digest(&SHA256, canonical.as_bytes()))
        );
        let key = aws_sigv4::sign::v4::generate_signing_key(
            &self.secret_access_key,
            block.signed_at.system_time(),
            &self.region,
            service,
        );
        aws_sigv4::sign::v4::calculate_signature(key, to_sign.as_bytes())
    }
}

/// Form-encoding of a query value as efs-utils does (`quote_plus`): unreserved bytes as is.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else if b == b' ' {
                "+".to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn utf8(der_bytes: &[u8]) -> Result<String, Refusal> {
    match der::read_tlv(der_bytes) {
        Some((tag::UTF8_STRING, content, [])) => String::from_utf8(content.to_vec())
            .map_err(|_| Refusal::Malformed("a UTF8String is not UTF-8".into())),
        _ => Err(Refusal::Malformed("expected a UTF8String extension".into())),
    }
}

/// Extension 7.2: SEQUENCE { UTF8String, OCTET STRING, UTCTime, [0] EXPLICIT UTF8String OPTIONAL }.
fn parse_sigv4(value: &[u8]) -> Result<Verified, Refusal> {
    let bad = |why: &str| Refusal::Malformed(format!("SigV4 extension: {why}"));
    let Some((tag::SEQUENCE, body, [])) = der::read_tlv(value) else {
        return Err(bad("not a SEQUENCE"));
    };
    let Some((tag::UTF8_STRING, akid, rest)) = der::read_tlv(body) else {
        return Err(bad("no access key id"));
    };
    let Some((tag::OCTET_STRING, signature, rest)) = der::read_tlv(rest) else {
        return Err(bad("no signature"));
    };
    let Some((tag::UTC_TIME, time, rest)) = der::read_tlv(rest) else {
        return Err(bad("no signing time"));
    };
    let session_token = match der::read_tlv(rest) {
        None if rest.is_empty() => None,
        Some((tag::CONTEXT_0, inner, [])) => Some(utf8(inner)?),
        _ => return Err(bad("unexpected content after the signing time")),
    };
    let text = |b: &[u8], what: &str| {
        String::from_utf8(b.to_vec()).map_err(|_| bad(&format!("{what} is not text")))
    };
    let time = text(time, "the signing time")?;
    // UTCTime YYMMDDHHMMSSZ: years 50-99 are 19xx (X.509), which no signature can be.
    let signed_at = match time.as_bytes() {
        [y1, y2, rest @ ..] if rest.len() == 11 && y1.is_ascii_digit() && y2.is_ascii_digit() => {
            let century = if *y1 >= b'5' { "19" } else { "20" };
            SigningTime::parse_amz_date(&format!("{century}{}T{}", &time[..6], &time[6..]))
                .map_err(|e| bad(&e))?
        }
        _ => return Err(bad("the signing time is not YYMMDDHHMMSSZ")),
    };
    let signature = text(signature, "the signature")?;
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("the signature is not 64 hex characters"));
    }
    Ok(Verified {
        access_key_id: text(akid, "the access key id")?,
        signature,
        signed_at,
        session_token,
        access_point: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encoding_matches_quote_plus() {
        assert_eq!(encode("a/b+c=d e~"), "a%2Fb%2Bc%3Dd+e~");
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let verifier = IamVerifier {
            secret_access_key: "s".into(),
            service: "s3files".into(),
            region: "us-east-1".into(),
            fs_id: "fs-0123456789abcdef0".into(),
            access_key_id: None,
        };
        assert!(matches!(
            verifier.verify(b"junk", SystemTime::now()),
            Err(Refusal::Malformed(_))
        ));
        for bad in [&b""[..], b"\x30\x00", b"\x30\x03\x0c\x01a", b"\x04\x00"] {
            assert!(
                matches!(parse_sigv4(bad), Err(Refusal::Malformed(_))),
                "{bad:?}"
            );
        }
    }
}
