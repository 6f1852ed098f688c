//! Property tests of the IAM certificate's encoders: for arbitrary credentials, ids, client
//! info and times, each custom extension (1.3.6.1.4.1.4843.7.1–.4) decodes back with an
//! independent DER parser (der-parser, via x509-parser) to the values encoded, and the whole
//! certificate carries exactly those extension bytes. Also the TLV reader against the writer
//! and the SigV4 date round trip. `fuzz/` runs the same checks as a coverage-guided target.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use efs_proxy::iam::certificate::{
    self, ClientInfo, OID_ACCESS_POINT, OID_CLIENT_INFO, OID_FS_ID, OID_SIGV4, SigV4Block,
};
use efs_proxy::iam::der;
use efs_proxy::iam::{CertificateSpec, ClientKey, Service, SigningTime};
use proptest::prelude::*;
use x509_parser::der_parser::ber::{BerObject, BerObjectContent, Class};
use x509_parser::der_parser::der::parse_der;

/// An ECDSA key: certificates in microseconds (the extensions do not depend on the key type).
fn key() -> &'static ClientKey {
    static KEY: OnceLock<ClientKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let pem = rcgen_pem();
        ClientKey::from_pem(pem.as_bytes(), "test.pem".as_ref()).unwrap()
    })
}

fn rcgen_pem() -> String {
    rcgen::KeyPair::generate().unwrap().serialize_pem()
}

fn one(der: &[u8]) -> BerObject<'_> {
    let (rest, obj) = parse_der(der).expect("valid DER");
    assert!(rest.is_empty(), "trailing bytes");
    obj
}

fn utf8(obj: &BerObject<'_>) -> String {
    assert!(
        matches!(obj.content, BerObjectContent::UTF8String(_)),
        "{obj:?}"
    );
    obj.as_str().unwrap().to_string()
}

/// A time from 1950 to 2049: what UTCTime (two-digit years) can name.
fn signing_time() -> impl Strategy<Value = SigningTime> {
    (0u64..3_155_760_000).prop_map(|s| {
        SigningTime::from_system_time(
            SystemTime::UNIX_EPOCH - Duration::from_secs(631_152_000) + Duration::from_secs(s),
        )
    })
}

fn block() -> impl Strategy<Value = SigV4Block> {
    (
        "\\PC{0,40}",
        "[0-9a-f]{64}|\\PC{0,80}",
        signing_time(),
        prop::option::of("\\PC{0,400}"),
    )
        .prop_map(
            |(access_key_id, signature, time, session_token)| SigV4Block {
                access_key_id,
                signature,
                time,
                session_token,
            },
        )
}

fn check_block(der: &[u8], block: &SigV4Block) -> Result<(), TestCaseError> {
    let obj = one(der);
    let items = obj.as_sequence().unwrap();
    prop_assert_eq!(items.len(), 3 + usize::from(block.session_token.is_some()));
    prop_assert_eq!(utf8(&items[0]), block.access_key_id.clone());
    prop_assert_eq!(items[1].as_slice().unwrap(), block.signature.as_bytes());
    let BerObjectContent::UTCTime(t) = &items[2].content else {
        return Err(TestCaseError::fail(format!("not UTCTime: {:?}", items[2])));
    };
    let want = block.time.offset_date_time();
    prop_assert_eq!(
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
    if let Some(token) = &block.session_token {
        prop_assert_eq!(
            (items[3].class(), items[3].tag().0),
            (Class::ContextSpecific, 0)
        );
        let inner = match &items[3].content {
            BerObjectContent::Tagged(_, _, inner) => utf8(inner),
            _ => utf8(&one(items[3].as_slice().unwrap())),
        };
        prop_assert_eq!(&inner, token);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn extensions_decode_back_to_what_was_encoded(
        block in block(),
        fs_id in "\\PC{0,300}",
        access_point in "\\PC{0,200}",
        source in "\\PC{0,100}",
        version in "\\PC{0,20}",
    ) {
        check_block(&certificate::sigv4_extension(&block), &block)?;
        prop_assert_eq!(utf8(&one(&certificate::fs_id_extension(&fs_id))), fs_id);
        prop_assert_eq!(utf8(&one(&certificate::access_point_extension(&access_point))), access_point);
        let info = ClientInfo { source, version };
        let info_der = certificate::client_info_extension(&info);
        let obj = one(&info_der);
        let items = obj.as_sequence().unwrap();
        prop_assert_eq!(items.len(), 2);
        prop_assert_eq!((utf8(&items[0]), utf8(&items[1])), (info.source, info.version));
    }

    #[test]
    fn certificates_carry_exactly_the_encoded_extensions(
        access_key_id in "\\PC{0,30}",
        secret in "\\PC{0,50}",
        session_token in prop::option::of("\\PC{0,300}"),
        fs_id in "fs-[0-9a-f]{8,17}|\\PC{0,40}",
        region in "[a-z]{2}-[a-z]{4,9}-[1-9]|\\PC{0,20}",
        access_point in prop::option::of("fsap-[0-9a-f]{17}|\\PC{0,40}"),
        common_name in "\\PC{1,64}",
        efs in any::<bool>(),
        time in signing_time(),
    ) {
        let mut spec = CertificateSpec::new(
            fs_id.clone(),
            region,
            if efs { Service::Efs } else { Service::S3Files },
        );
        spec.access_point = access_point.clone();
        spec.common_name = common_name.clone();
        let signed = certificate::sign(key(), &spec, time, &access_key_id, &secret, session_token.as_deref());
        prop_assert_eq!(signed.block.signature.len(), 64);
        let cert = certificate::build(key(), &spec, time, Some(&signed.block)).unwrap();
        let (rest, x509) = x509_parser::parse_x509_certificate(&cert.der).unwrap();
        prop_assert!(rest.is_empty());
        let custom: Vec<(String, Vec<u8>)> = x509
            .extensions()
            .iter()
            .filter(|e| e.oid.to_id_string().starts_with("1.3.6.1.4.1.4843.7."))
            .map(|e| (e.oid.to_id_string(), e.value.to_vec()))
            .collect();
        let oid = |arcs: &[u64]| arcs.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
        let mut want = Vec::new();
        if let Some(ap) = &access_point {
            want.push((oid(OID_ACCESS_POINT), certificate::access_point_extension(ap)));
        }
        want.push((oid(OID_SIGV4), certificate::sigv4_extension(&signed.block)));
        want.push((oid(OID_FS_ID), certificate::fs_id_extension(&fs_id)));
        want.push((oid(OID_CLIENT_INFO), certificate::client_info_extension(&spec.client_info)));
        prop_assert_eq!(custom, want);
        let cn: Vec<&str> = x509.subject().iter_common_name().map(|a| a.as_str().unwrap()).collect();
        prop_assert_eq!(cn, vec![common_name.as_str()]);
    }

    #[test]
    fn tlv_reader_inverts_the_writer(
        tag in any::<u8>(),
        content in prop::collection::vec(any::<u8>(), 0..70_000),
        rest in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut wire = der::tlv(tag, &content);
        let header = wire.len() - content.len();
        wire.extend_from_slice(&rest);
        prop_assert_eq!(der::read_tlv(&wire), Some((tag, &content[..], &rest[..])));
        prop_assert_eq!(der::read_tlv(&wire[..header + content.len() - 1]), None);
    }

    #[test]
    fn sigv4_dates_round_trip(time in signing_time()) {
        prop_assert_eq!(SigningTime::parse_amz_date(&time.amz_date()), Ok(time));
        prop_assert_eq!(SigningTime::parse_rfc3339(&time.rfc3339()), Ok(time));
        prop_assert_eq!(time.utc_time().len(), 13);
    }
}
