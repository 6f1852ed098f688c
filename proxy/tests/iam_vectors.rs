//! Known-answer tests for the IAM certificate: every field of the vectors made by the
//! reference implementation (efs-utils 3.2.0 with openssl, fixed inputs) must come out byte
//! for byte. The vectors live in `proxy/tests/vectors/iam/`, in the repository, with the
//! inputs that made them (`iam-cert-vectors.json`) and the test key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_credential_types::Credentials;
use efs_proxy::iam::credentials::SourcedCredentials;
use efs_proxy::iam::{
    CertificateSpec, ClientInfo, ClientKey, Issuer, Service, SigningTime, certificate, der,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, SubjectPublicKeyInfoDer};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/iam")
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join("iam-cert-vectors.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let cases = doc["cases"].as_array().unwrap().clone();
    assert_eq!(cases.len(), 4, "the vector file has four cases");
    cases
}

fn s<'a>(case: &'a Value, field: &str) -> &'a str {
    case[field]
        .as_str()
        .unwrap_or_else(|| panic!("{}: {field} is not a string", case["name"]))
}

fn opt<'a>(case: &'a Value, field: &str) -> Option<&'a str> {
    case[field].as_str()
}

fn key() -> ClientKey {
    ClientKey::load(&dir().join("test-key-rsa3072.pem")).unwrap()
}

fn spec(case: &Value) -> CertificateSpec {
    let service = Service::parse(s(case, "service")).unwrap();
    let mut spec = CertificateSpec::new(s(case, "fs_id"), s(case, "region"), service);
    spec.access_point = opt(case, "access_point_id").map(str::to_string);
    spec.common_name = s(case, "subject_cn").to_string();
    spec.client_info = ClientInfo {
        source: case["client_info"]["source"].as_str().unwrap().to_string(),
        version: case["client_info"]["efs_utils_version"]
            .as_str()
            .unwrap()
            .to_string(),
    };
    spec
}

fn time(case: &Value) -> SigningTime {
    SigningTime::parse_amz_date(s(case, "sigv4_datetime")).unwrap()
}

fn signed(case: &Value) -> certificate::Signed {
    certificate::sign(
        &key(),
        &spec(case),
        time(case),
        s(case, "access_key_id"),
        s(case, "secret_access_key"),
        opt(case, "session_token"),
    )
}

fn ext_hex(case: &Value, oid: &str) -> Option<String> {
    case["extensions_der_hex"][oid].as_str().map(str::to_string)
}

#[test]
fn public_key_hash_from_the_private_key_and_from_the_public_key_file() {
    let key = key();
    for case in cases() {
        assert_eq!(key.public_key_hash(), s(&case, "public_key_sha1"));
        let pem = std::fs::read(dir().join(s(&case, "public_key_pem_file"))).unwrap();
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(&pem).unwrap();
        let raw = der::subject_public_key(spki.as_ref()).unwrap();
        assert_eq!(raw, key.public_key_raw());
    }
}

#[test]
fn a_pkcs1_copy_of_the_key_has_the_same_hash() {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let pem = std::fs::read_to_string(dir().join("test-key-rsa3072.pem")).unwrap();
    let key = rsa::PrivateKey::from_pkcs8_pem(&pem).unwrap();
    let pkcs1 = key.to_pkcs1_pem(Default::default()).unwrap();
    assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let loaded = ClientKey::from_pem(pkcs1.as_bytes(), Path::new("pkcs1.pem")).unwrap();
    assert_eq!(
        loaded.public_key_hash(),
        "c243e9e62d2f779937e104a3f5f3b8553cc03376"
    );
}

#[test]
fn canonical_request_string_to_sign_and_signature() {
    for case in cases() {
        let name = s(&case, "name");
        let signed = signed(&case);
        assert_eq!(
            signed.request.canonical_request(),
            s(&case, "canonical_request"),
            "{name}"
        );
        assert_eq!(
            signed.request.string_to_sign(),
            s(&case, "string_to_sign"),
            "{name}"
        );
        assert_eq!(signed.block.signature, s(&case, "signature"), "{name}");
        assert_eq!(time(&case).utc_time(), s(&case, "cert_datetime"), "{name}");
    }
}

#[test]
fn every_custom_extension_der() {
    for case in cases() {
        let name = s(&case, "name");
        let signed = signed(&case);
        let spec = spec(&case);
        let made = [
            (
                "1.3.6.1.4.1.4843.7.1",
                spec.access_point
                    .as_deref()
                    .map(certificate::access_point_extension),
            ),
            (
                "1.3.6.1.4.1.4843.7.2",
                Some(certificate::sigv4_extension(&signed.block)),
            ),
            (
                "1.3.6.1.4.1.4843.7.3",
                Some(certificate::fs_id_extension(&spec.fs_id)),
            ),
            (
                "1.3.6.1.4.1.4843.7.4",
                Some(certificate::client_info_extension(&spec.client_info)),
            ),
        ];
        for (oid, der) in made {
            assert_eq!(der.map(hex::encode), ext_hex(&case, oid), "{name} {oid}");
        }
    }
}

/// With the same key and inputs, the whole certificate equals the reference's: serial,
/// names, validity, extension order, and the (deterministic) RSA signature.
#[test]
fn the_whole_certificate_byte_for_byte() {
    let key = key();
    for case in cases() {
        let name = s(&case, "name");
        let signed = signed(&case);
        let cert =
            certificate::build(&key, &spec(&case), time(&case), Some(&signed.block)).unwrap();
        assert_eq!(cert.not_before.utc_time(), s(&case, "not_before"), "{name}");
        assert_eq!(cert.not_after.utc_time(), s(&case, "not_after"), "{name}");
        let pem = std::fs::read(dir().join(s(&case, "certificate_pem_file"))).unwrap();
        let reference = CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(
            hex::encode(cert.der.as_ref()),
            hex::encode(reference.as_ref()),
            "{name}"
        );
    }
}

/// The same through the issuer, as the proxy makes certificates at run time.
#[test]
fn the_issuer_makes_the_reference_certificate_from_credentials() {
    for case in cases() {
        let credentials = Credentials::new(
            s(&case, "access_key_id"),
            s(&case, "secret_access_key"),
            opt(&case, "session_token").map(str::to_string),
            None,
            "test",
        );
        let sourced = SourcedCredentials {
            credentials,
            source: "environment",
            elapsed: Duration::ZERO,
        };
        let issuer = Issuer::new(spec(&case), key(), None);
        let issued = issuer.issue_with(Some(&sourced), time(&case)).unwrap();
        let pem = std::fs::read(dir().join(s(&case, "certificate_pem_file"))).unwrap();
        let reference = CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(issued.certificate.der, reference, "{}", s(&case, "name"));
        assert_eq!(issued.identity.chain, vec![reference]);
        assert_eq!(issued.access_key_id.as_deref(), Some("AKIDEXAMPLE"));
        let shown = format!("{issued:?}");
        assert!(!shown.contains(s(&case, "secret_access_key")), "{shown}");
        if let Some(token) = opt(&case, "session_token") {
            assert!(!shown.contains(token), "{shown}");
        }
    }
}

/// Without credentials (efs-utils' TLS mounts without `iam`), the certificate has no 7.2.
#[test]
fn without_iam_there_is_no_sigv4_extension() {
    let case = &cases()[0];
    let issuer = Issuer::new(spec(case), key(), None);
    let issued = issuer.issue_with(None, time(case)).unwrap();
    let der = hex::encode(issued.certificate.der.as_ref());
    let fs_id_ext = ext_hex(case, "1.3.6.1.4.1.4843.7.3").unwrap();
    assert!(der.contains(&fs_id_ext));
    // The 7.2 OID's DER (06 09 2b06010401a56b0702) must be absent.
    assert!(!der.contains("06092b06010401a56b0702"), "{der}");
    assert!(der.contains("06092b06010401a56b0703"));
    assert_eq!(issued.access_key_id, None);
}
