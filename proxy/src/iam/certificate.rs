//! The IAM client certificate: efs-utils' custom extensions and the self-signed certificate
//! around them, made by [`build`] and read back by [`decode`] (for `efs-proxy check` and
//! `cert --explain`).
//!
//! Layout (`docs/protocol.md`, from efs-utils' `certificate_utils.py`), every extension
//! non-critical, in this order:
//!
//! | OID | content |
//! |---|---|
//! | 2.5.29.14 subjectKeyIdentifier | OCTET STRING, SHA-1 of the subjectPublicKey |
//! | 1.3.6.1.4.1.4843.7.1 | UTF8String access point id (only with an access point) |
//! | 1.3.6.1.4.1.4843.7.2 | SEQUENCE { UTF8String access key id, OCTET STRING signature as 64 ASCII hex characters, UTCTime signing time, \[0\] EXPLICIT UTF8String session token OPTIONAL } (only with IAM) |
//! | 1.3.6.1.4.1.4843.7.3 | UTF8String file system id |
//! | 1.3.6.1.4.1.4843.7.4 | SEQUENCE { UTF8String source, UTF8String efs-utils version } |
//!
//! X.509 v3, serial 0, sha256WithRSAEncryption, issuer = subject = `CN=<host name>`
//! (UTF8String), valid from 15 minutes before the signing time to 3 hours after it. With the
//! same key and inputs the whole certificate equals efs-utils' byte for byte (PKCS#1 v1.5
//! signatures are deterministic).

use rcgen::{CertificateParams, CustomExtension, DistinguishedName, DnType, SerialNumber};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::der::{self, tag};
use super::key::ClientKey;
use super::signing_time::SigningTime;
use super::{CertificateSpec, sigv4};

/// `1.3.6.1.4.1.4843.7.1`: the access point id.
pub const OID_ACCESS_POINT: &[u64] = &[1, 3, 6, 1, 4, 1, 4843, 7, 1];
/// `1.3.6.1.4.1.4843.7.2`: the SigV4 block.
pub const OID_SIGV4: &[u64] = &[1, 3, 6, 1, 4, 1, 4843, 7, 2];
/// `1.3.6.1.4.1.4843.7.3`: the file system id.
pub const OID_FS_ID: &[u64] = &[1, 3, 6, 1, 4, 1, 4843, 7, 3];
/// `1.3.6.1.4.1.4843.7.4`: client information.
pub const OID_CLIENT_INFO: &[u64] = &[1, 3, 6, 1, 4, 1, 4843, 7, 4];
/// `2.5.29.14`: subjectKeyIdentifier (rcgen writes it only for CA certificates).
pub const OID_SUBJECT_KEY_IDENTIFIER: &[u64] = &[2, 5, 29, 14];

/// Extension 7.4: who made the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// efs-utils' `[client-info] source` (1–100 characters), `unknown` by default.
    pub source: String,
    /// efs-utils' version string.
    pub version: String,
}

impl Default for ClientInfo {
    fn default() -> Self {
        ClientInfo {
            source: "unknown".into(),
            version: "3.2.0".into(),
        }
    }
}

/// The content of extension 7.2. `Debug` shows the session token's length only.
#[derive(Clone, PartialEq, Eq)]
pub struct SigV4Block {
    /// The AWS access key id whose secret made the signature (`AKIA…`, or `ASIA…` for
    /// temporary credentials).
    pub access_key_id: String,
    /// The 64 hex characters of the signature.
    pub signature: String,
    /// The signing time (`X-Amz-Date`), written as a UTCTime.
    pub time: SigningTime,
    /// The session token of temporary credentials, which the mount target needs to check
    /// the signature; as secret as the credentials themselves.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for SigV4Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigV4Block")
            .field("access_key_id", &self.access_key_id)
            .field("signature", &self.signature)
            .field("time", &self.time)
            .field(
                "session_token",
                &sigv4::redacted(self.session_token.as_deref()),
            )
            .finish()
    }
}

/// DER of extension 7.1.
pub fn access_point_extension(access_point: &str) -> Vec<u8> {
    der::utf8_string(access_point)
}

/// DER of extension 7.2.
pub fn sigv4_extension(block: &SigV4Block) -> Vec<u8> {
    let mut body = der::utf8_string(&block.access_key_id);
    body.extend(der::octet_string(block.signature.as_bytes()));
    body.extend(der::tlv(tag::UTC_TIME, block.time.utc_time().as_bytes()));
    if let Some(token) = &block.session_token {
        body.extend(der::tlv(tag::CONTEXT_0, &der::utf8_string(token)));
    }
    der::tlv(tag::SEQUENCE, &body)
}

/// DER of extension 7.3.
pub fn fs_id_extension(fs_id: &str) -> Vec<u8> {
    der::utf8_string(fs_id)
}

/// DER of extension 7.4.
pub fn client_info_extension(info: &ClientInfo) -> Vec<u8> {
    der::sequence(&[
        &der::utf8_string(&info.source),
        &der::utf8_string(&info.version),
    ])
}

/// A certificate made by [`build`].
#[derive(Clone)]
pub struct Certificate {
    /// The certificate in DER, as presented in the TLS handshake.
    pub der: CertificateDer<'static>,
    /// The same certificate PEM-encoded, as efs-utils writes it to disk.
    pub pem: String,
    /// Start of validity: the signing time minus the spec's backdate.
    pub not_before: SigningTime,
    /// End of validity: the signing time plus the spec's lifetime.
    pub not_after: SigningTime,
    /// The signing time (also in extension 7.2 when signed).
    pub signed_at: SigningTime,
}

impl std::fmt::Debug for Certificate {
    /// The validity only: the DER holds the session token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Builds and self-signs the certificate for `spec` at `time`, with the SigV4 block when
/// given (an IAM certificate) or without it (efs-utils' certificate for TLS mounts without
/// `iam`).
pub fn build(
    key: &ClientKey,
    spec: &CertificateSpec,
    time: SigningTime,
    sigv4: Option<&SigV4Block>,
) -> Result<Certificate, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, spec.common_name.as_str());
    params.distinguished_name = name;
    // efs-utils' openssl CA database starts at serial 00 for every mount.
    params.serial_number = Some(SerialNumber::from_slice(&[0]));
    let not_before = time.minus(spec.backdate);
    let not_after = time.plus(spec.lifetime);
    params.not_before = not_before.offset_date_time();
    params.not_after = not_after.offset_date_time();

    let mut extensions = vec![CustomExtension::from_oid_content(
        OID_SUBJECT_KEY_IDENTIFIER,
        der::octet_string(&key.public_key_sha1()),
    )];
    if let Some(ap) = &spec.access_point {
        extensions.push(CustomExtension::from_oid_content(
            OID_ACCESS_POINT,
            access_point_extension(ap),
        ));
    }
    if let Some(block) = sigv4 {
        extensions.push(CustomExtension::from_oid_content(
            OID_SIGV4,
            sigv4_extension(block),
        ));
    }
    extensions.push(CustomExtension::from_oid_content(
        OID_FS_ID,
        fs_id_extension(&spec.fs_id),
    ));
    extensions.push(CustomExtension::from_oid_content(
        OID_CLIENT_INFO,
        client_info_extension(&spec.client_info),
    ));
    params.custom_extensions = extensions;

    let cert = params.self_signed(key.key_pair())?;
    Ok(Certificate {
        der: cert.der().clone(),
        pem: cert.pem(),
        not_before,
        not_after,
        signed_at: time,
    })
}

/// Everything that was signed, for `efs-proxy cert --explain` and tests.
#[derive(Debug, Clone)]
pub struct Signed {
    /// Every input of the signature but the secret key.
    pub request: sigv4::SigningRequest,
    /// The resulting content of extension 7.2.
    pub block: SigV4Block,
}

/// Signs efs-utils' request for `spec` with the key's public key hash. An empty session token
/// is no token: efs-utils leaves it out of both the query and the certificate.
pub fn sign(
    key: &ClientKey,
    spec: &CertificateSpec,
    time: SigningTime,
    access_key_id: &str,
    secret_access_key: &str,
    session_token: Option<&str>,
) -> Signed {
    let session_token = session_token.filter(|t| !t.is_empty());
    let request = sigv4::SigningRequest {
        access_key_id: access_key_id.to_string(),
        session_token: session_token.map(str::to_string),
        region: spec.region.clone(),
        service: spec.service.signing_name().to_string(),
        fs_id: spec.fs_id.clone(),
        public_key_hash: key.public_key_hash(),
        time,
    };
    let block = SigV4Block {
        access_key_id: access_key_id.to_string(),
        signature: request.signature(secret_access_key),
        time,
        session_token: session_token.map(str::to_string),
    };
    Signed { request, block }
}

/// What [`decode`] reads back from a client certificate: subject, validity and the
/// extensions. The SigV4 signature and the session token stay out (only whether a token is
/// there), so a decoded certificate can be shown and logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    /// The subject's distinguished name (`CN=<host name>` for a certificate made here).
    pub subject: String,
    /// Start of validity; `None` when out of the representable range.
    pub not_before: Option<SigningTime>,
    /// End of validity; `None` when out of the representable range.
    pub not_after: Option<SigningTime>,
    /// Extension 7.3.
    pub fs_id: Option<String>,
    /// Extension 7.1.
    pub access_point: Option<String>,
    /// Extension 7.2, as far as it is well formed.
    pub sigv4: Option<DecodedSigV4>,
    /// Extension 7.4.
    pub client_info: Option<ClientInfo>,
}

/// Extension 7.2 without its secrets: the access key id, the signing time, whether a session
/// token is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedSigV4 {
    /// The access key id that signed (empty when malformed).
    pub access_key_id: String,
    /// The signing time, which the mount target checks against [`sigv4::EXPIRES_SECS`].
    pub signed_at: Option<SigningTime>,
    /// Whether a session token is present (temporary credentials).
    pub session_token: bool,
}

/// Bytes that are not an X.509 certificate.
#[derive(Debug, thiserror::Error)]
#[error("not an X.509 certificate: {0}")]
pub struct NotACertificate(#[source] Box<dyn std::error::Error + Send + Sync>);

/// Decodes a client certificate's subject, validity and efs-utils extensions; the inverse of
/// [`build`] for what it reads. Never panics: a malformed extension is absent.
pub fn decode(cert_der: &[u8]) -> Result<Decoded, NotACertificate> {
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|e| NotACertificate(Box::new(e)))?;
    let extension = |oid: &[u64]| {
        cert.extensions()
            .iter()
            .find(|e| {
                e.oid
                    .iter()
                    .is_some_and(|arcs| arcs.eq(oid.iter().copied()))
            })
            .map(|e| e.value)
    };
    let utf8 = |value: &[u8]| match der::read_tlv(value) {
        Some((tag::UTF8_STRING, content, [])) => {
            Some(String::from_utf8_lossy(content).into_owned())
        }
        _ => None,
    };
    let validity = cert.validity();
    Ok(Decoded {
        subject: cert.subject().to_string(),
        not_before: SigningTime::from_unix(validity.not_before.timestamp()),
        not_after: SigningTime::from_unix(validity.not_after.timestamp()),
        fs_id: extension(OID_FS_ID).and_then(utf8),
        access_point: extension(OID_ACCESS_POINT).and_then(utf8),
        sigv4: extension(OID_SIGV4).map(decode_sigv4),
        client_info: extension(OID_CLIENT_INFO).and_then(decode_client_info),
    })
}

/// Extension 7.2, as far as it is well formed: the fields after a malformed one are absent.
fn decode_sigv4(value: &[u8]) -> DecodedSigV4 {
    let body = match der::read_tlv(value) {
        Some((tag::SEQUENCE, body, _)) => body,
        _ => &[][..],
    };
    let (access_key_id, rest) = match der::read_tlv(body) {
        Some((tag::UTF8_STRING, akid, rest)) => (String::from_utf8_lossy(akid).into_owned(), rest),
        _ => (String::new(), &[][..]),
    };
    let rest = match der::read_tlv(rest) {
        Some((tag::OCTET_STRING, _signature, rest)) => rest,
        _ => &[][..],
    };
    let (signed_at, rest) = match der::read_tlv(rest) {
        Some((tag::UTC_TIME, time, rest)) => (SigningTime::parse_utc_time(time), rest),
        _ => (None, &[][..]),
    };
    DecodedSigV4 {
        access_key_id,
        signed_at,
        session_token: matches!(der::read_tlv(rest), Some((tag::CONTEXT_0, _, _))),
    }
}

/// Extension 7.4: source and version.
fn decode_client_info(value: &[u8]) -> Option<ClientInfo> {
    let (tag::SEQUENCE, body, _) = der::read_tlv(value)? else {
        return None;
    };
    let (tag::UTF8_STRING, source, rest) = der::read_tlv(body)? else {
        return None;
    };
    let (tag::UTF8_STRING, version, _) = der::read_tlv(rest)? else {
        return None;
    };
    Some(ClientInfo {
        source: String::from_utf8_lossy(source).into_owned(),
        version: String::from_utf8_lossy(version).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of `docs/protocol.md` (the IAM certificate).
    #[test]
    fn extension_bytes_of_the_spec_examples() {
        assert_eq!(
            hex::encode(fs_id_extension("fs-0123456789abcdef0")),
            "0c1466732d3031323334353637383961626364656630"
        );
        assert_eq!(
            hex::encode(client_info_extension(&ClientInfo::default())),
            format!(
                "30100c07{}0c05{}",
                hex::encode("unknown"),
                hex::encode("3.2.0")
            )
        );
        let block = SigV4Block {
            access_key_id: "AKIDEXAMPLE".into(),
            signature: "0".repeat(64),
            time: SigningTime::parse_amz_date("20260102T030405Z").unwrap(),
            session_token: Some("IQoJb3JpZ2luX2VjEXAMPLE/TOKEN+abc==".into()),
        };
        let der = sigv4_extension(&block);
        assert_eq!(&der[..3], &[0x30, 0x81, 0x85]);
        assert!(hex::encode(&der).contains(&format!("170d{}", hex::encode("260102030405Z"))));
        assert!(hex::encode(&der).contains("a0250c23"));
    }

    #[test]
    fn decode_reads_back_what_build_wrote() {
        let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let key = ClientKey::from_pem(pem.as_bytes(), std::path::Path::new("k.pem")).unwrap();
        let mut spec = CertificateSpec::new(
            "fs-0123456789abcdef0",
            "us-east-1",
            super::super::Service::S3Files,
        );
        spec.access_point = Some("fsap-0123456789abcdef0".into());
        let time = SigningTime::parse_amz_date("20260102T030405Z").unwrap();
        let signed = sign(&key, &spec, time, "AKIDEXAMPLE", "secret", Some("TOKEN"));
        let cert = build(&key, &spec, time, Some(&signed.block)).unwrap();
        let decoded = decode(&cert.der).unwrap();
        assert_eq!(decoded.fs_id.as_deref(), Some("fs-0123456789abcdef0"));
        assert_eq!(decoded.access_point, spec.access_point);
        assert_eq!(decoded.client_info, Some(ClientInfo::default()));
        assert_eq!(
            decoded.sigv4,
            Some(DecodedSigV4 {
                access_key_id: "AKIDEXAMPLE".into(),
                signed_at: Some(time),
                session_token: true,
            })
        );
        assert_eq!(
            (decoded.not_before, decoded.not_after),
            (Some(cert.not_before), Some(cert.not_after))
        );
        let unsigned = decode(&build(&key, &spec, time, None).unwrap().der).unwrap();
        assert_eq!(unsigned.sigv4, None);
        let err = decode(b"\x30\x03\x02\x01").unwrap_err();
        assert!(std::error::Error::source(&err).is_some(), "{err}");
    }

    #[test]
    fn an_empty_session_token_is_no_token() {
        let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let key = ClientKey::from_pem(pem.as_bytes(), std::path::Path::new("k.pem")).unwrap();
        let spec = CertificateSpec::new(
            "fs-0123456789abcdef0",
            "us-east-1",
            super::super::Service::S3Files,
        );
        let time = SigningTime::parse_amz_date("20260102T030405Z").unwrap();
        let empty = sign(&key, &spec, time, "AKIDEXAMPLE", "secret", Some(""));
        let none = sign(&key, &spec, time, "AKIDEXAMPLE", "secret", None);
        assert_eq!(empty.request.session_token, None);
        assert!(!empty.request.canonical_query().contains("Security-Token"));
        assert_eq!(empty.block, none.block);
        assert_eq!(sigv4_extension(&empty.block), sigv4_extension(&none.block));
    }

    #[test]
    fn debug_of_the_block_and_the_signed_request_never_shows_the_token() {
        let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let key = ClientKey::from_pem(pem.as_bytes(), std::path::Path::new("k.pem")).unwrap();
        let spec = CertificateSpec::new(
            "fs-0123456789abcdef0",
            "us-east-1",
            super::super::Service::Efs,
        );
        let time = SigningTime::parse_amz_date("20260102T030405Z").unwrap();
        let token = "IQoJb3JpZ2luX2VjEXAMPLE/SECRETTOKEN";
        let signed = sign(&key, &spec, time, "AKIDEXAMPLE", "secret", Some(token));
        let shown = format!("{signed:?} {:?}", signed.block);
        assert!(!shown.contains("SECRETTOKEN"), "{shown}");
        assert!(shown.contains("<redacted, 35 characters>"), "{shown}");
    }
}
