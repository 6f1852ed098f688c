//! The IAM certificate's custom extensions (1.3.6.1.4.1.4843.7.1–.4): arbitrary credentials,
//! ids, client info and times encode to DER that an independent parser (der-parser) decodes
//! back to the same values; the whole certificate built around them parses with x509-parser
//! and carries exactly those extension bytes, and `certificate::decode` reads back what was
//! encoded. Plus the hand-written TLV reader and the signing-time parsers.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use efs_proxy::iam::certificate::{
    self, Certificate, ClientInfo, OID_ACCESS_POINT, OID_CLIENT_INFO, OID_FS_ID, OID_SIGV4,
    OID_SUBJECT_KEY_IDENTIFIER, SigV4Block,
};
use efs_proxy::iam::der;
use efs_proxy::iam::{CertificateSpec, ClientKey, Service, SigningTime};
use efs_proxy_fuzz::CertInput;
use libfuzzer_sys::fuzz_target;
use x509_parser::der_parser::ber::{BerObject, BerObjectContent, Class};
use x509_parser::der_parser::der::parse_der;

/// Seconds from the Unix epoch back to 1950-01-01T00:00:00Z.
const EPOCH_1950: u64 = 631_152_000;

fn key() -> &'static ClientKey {
    // ECDSA P-256: signing costs microseconds, so each run can build a whole certificate. The
    // extensions do not depend on the key type (RSA is covered by proxy/tests/iam_vectors.rs).
    static KEY: OnceLock<ClientKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
        ClientKey::from_pem(pem.as_bytes(), "fuzz.pem".as_ref()).unwrap()
    })
}

fn parse_one(der: &[u8]) -> BerObject<'_> {
    let (rest, obj) = parse_der(der).unwrap_or_else(|e| panic!("not DER: {e:?} {der:02x?}"));
    assert!(rest.is_empty(), "trailing bytes after the extension");
    obj
}

fn utf8(obj: &BerObject) -> String {
    assert!(
        matches!(obj.content, BerObjectContent::UTF8String(_)),
        "{obj:?}"
    );
    obj.as_str().unwrap().to_string()
}

fn check_time(obj: &BerObject, time: SigningTime) {
    let BerObjectContent::UTCTime(t) = &obj.content else {
        panic!("expected UTCTime: {obj:?}")
    };
    let want = time.offset_date_time();
    assert_eq!(
        (t.year % 100, t.month, t.day, t.hour, t.minute, t.second),
        (
            want.year().rem_euclid(100) as u32,
            u8::from(want.month()),
            want.day(),
            want.hour(),
            want.minute(),
            want.second()
        )
    );
}

/// Decodes extension 7.2 with der-parser and compares it with what was encoded.
fn check_sigv4(der: &[u8], block: &SigV4Block) {
    let obj = parse_one(der);
    let items = obj.as_sequence().expect("7.2 is a SEQUENCE");
    assert_eq!(items.len(), 3 + usize::from(block.session_token.is_some()));
    assert_eq!(utf8(&items[0]), block.access_key_id);
    assert!(matches!(items[1].content, BerObjectContent::OctetString(_)));
    assert_eq!(items[1].as_slice().unwrap(), block.signature.as_bytes());
    check_time(&items[2], block.time);
    if let Some(token) = &block.session_token {
        let tagged = &items[3];
        assert_eq!(
            (tagged.class(), tagged.tag().0),
            (Class::ContextSpecific, 0)
        );
        let inner = match &tagged.content {
            BerObjectContent::Tagged(_, _, inner) => utf8(inner),
            _ => utf8(&parse_one(tagged.as_slice().unwrap())),
        };
        assert_eq!(&inner, token);
    }
}

/// The decoder reads back every extension the encoder wrote. The signing time only within
/// UTCTime's 1950–2049 (two-digit years); validity times from 1970 on (Unix time).
fn check_decoded(cert: &Certificate, spec: &CertificateSpec, block: &SigV4Block) {
    let decoded = certificate::decode(&cert.der)
        .unwrap_or_else(|e| panic!("a certificate built here does not decode: {e}"));
    assert_eq!(decoded.fs_id.as_ref(), Some(&spec.fs_id));
    assert_eq!(decoded.access_point, spec.access_point);
    assert_eq!(decoded.client_info.as_ref(), Some(&spec.client_info));
    let sigv4 = decoded.sigv4.expect("extension 7.2 decodes");
    assert_eq!(sigv4.access_key_id, block.access_key_id);
    assert_eq!(sigv4.session_token, block.session_token.is_some());
    if (1950..2050).contains(&block.time.offset_date_time().year()) {
        assert_eq!(sigv4.signed_at, Some(block.time));
    }
    let from_1970 = |t: SigningTime| (t.offset_date_time().unix_timestamp() >= 0).then_some(t);
    assert_eq!(decoded.not_before, from_1970(cert.not_before));
    assert_eq!(decoded.not_after, from_1970(cert.not_after));
}

fn oid_string(arcs: &[u64]) -> String {
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fuzz_target!(|data: &[u8]| {
    let input = CertInput::parse(data);
    let time = SigningTime::from_system_time(
        SystemTime::UNIX_EPOCH - Duration::from_secs(EPOCH_1950)
            + Duration::from_secs(u64::from(input.time)),
    );

    // Each extension on its own.
    if let Some(ap) = &input.access_point {
        assert_eq!(
            &utf8(&parse_one(&certificate::access_point_extension(ap))),
            ap
        );
    }
    assert_eq!(
        utf8(&parse_one(&certificate::fs_id_extension(&input.fs_id))),
        input.fs_id
    );
    let info = ClientInfo {
        source: input.source.clone(),
        version: input.version.clone(),
    };
    let info_der = certificate::client_info_extension(&info);
    let obj = parse_one(&info_der);
    let items = obj.as_sequence().expect("7.4 is a SEQUENCE");
    assert_eq!(items.len(), 2);
    assert_eq!(
        (utf8(&items[0]), utf8(&items[1])),
        (info.source.clone(), info.version.clone())
    );

    let mut spec = CertificateSpec::new(
        input.fs_id.clone(),
        input.region.clone(),
        if input.efs {
            Service::Efs
        } else {
            Service::S3Files
        },
    );
    spec.access_point = input.access_point.clone();
    spec.common_name = input.common_name.clone();
    spec.client_info = info;
    spec.backdate = Duration::from_secs(input.backdate.into());
    spec.lifetime = Duration::from_secs(input.lifetime.into());

    let block = if input.sign {
        let signed = certificate::sign(
            key(),
            &spec,
            time,
            &input.access_key_id,
            &input.secret_access_key,
            input.session_token.as_deref(),
        );
        assert_eq!(signed.block.signature.len(), 64);
        let _ = signed.request.canonical_request_redacted();
        signed.block
    } else {
        SigV4Block {
            access_key_id: input.access_key_id.clone(),
            signature: input.signature.clone(),
            time,
            session_token: input.session_token.clone(),
        }
    };
    check_sigv4(&certificate::sigv4_extension(&block), &block);

    if input.build {
        let cert = certificate::build(key(), &spec, time, Some(&block))
            .unwrap_or_else(|e| panic!("certificate not built: {e}"));
        let (rest, x509) = x509_parser::parse_x509_certificate(&cert.der)
            .unwrap_or_else(|e| panic!("certificate does not parse: {e}"));
        assert!(rest.is_empty());
        let mut want = vec![(
            oid_string(OID_SUBJECT_KEY_IDENTIFIER),
            der::octet_string(&key().public_key_sha1()),
        )];
        if let Some(ap) = &spec.access_point {
            want.push((
                oid_string(OID_ACCESS_POINT),
                certificate::access_point_extension(ap),
            ));
        }
        want.push((oid_string(OID_SIGV4), certificate::sigv4_extension(&block)));
        want.push((
            oid_string(OID_FS_ID),
            certificate::fs_id_extension(&spec.fs_id),
        ));
        want.push((oid_string(OID_CLIENT_INFO), info_der));
        let got: Vec<(String, Vec<u8>)> = x509
            .extensions()
            .iter()
            .map(|e| {
                assert!(!e.critical);
                (e.oid.to_id_string(), e.value.to_vec())
            })
            .collect();
        assert_eq!(got, want);
        let cn: Vec<&str> = x509
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(cn, [spec.common_name.as_str()]);
        assert_eq!(x509.subject(), x509.issuer());
        let validity = x509.validity();
        assert_eq!(
            validity.not_before.timestamp(),
            cert.not_before.offset_date_time().unix_timestamp()
        );
        assert_eq!(
            validity.not_after.timestamp(),
            cert.not_after.offset_date_time().unix_timestamp()
        );
        assert!(cert.pem.starts_with("-----BEGIN CERTIFICATE-----"));
        check_decoded(&cert, &spec, &block);
    }

    // The TLV writer and reader.
    let (tag, content, rest) = (&input.tlv_tag, &input.tlv_content, input.text.as_bytes());
    let mut wire = der::tlv(*tag, content);
    let header = wire.len() - content.len();
    wire.extend_from_slice(rest);
    assert_eq!(der::read_tlv(&wire), Some((*tag, &content[..], rest)));
    assert_eq!(
        der::read_tlv(&wire[..header + content.len() - 1]),
        None,
        "truncated TLV"
    );
    let _ = der::read_tlv(rest);
    let _ = der::subject_public_key(rest);

    // The signing-time parsers.
    if let Some(t) = SigningTime::parse_utc_time(input.text.as_bytes()) {
        assert_eq!(t.utc_time(), input.text);
    }
    if let Ok(t) = SigningTime::parse_amz_date(&input.text) {
        assert_eq!(t.amz_date(), input.text);
    }
    if let Ok(t) = SigningTime::parse_rfc3339(&input.text) {
        assert_eq!(
            SigningTime::parse_rfc3339(&t.rfc3339()),
            Ok(t),
            "{}",
            t.rfc3339()
        );
        let _ = (t.utc_time(), t.date_stamp(), t.system_time());
    }
});
