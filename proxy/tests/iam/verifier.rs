//! The fake mount target's IAM verifier itself, against the reference certificates.

use super::*;

fn at(rfc3339: &str) -> SystemTime {
    efs_proxy::iam::SigningTime::parse_rfc3339(rfc3339)
        .unwrap()
        .system_time()
}

#[test]
fn the_fake_target_accepts_the_reference_certificates_and_says_why_it_refuses_others() {
    let during = at("2026-04-15T13:00:00Z");
    let cases = [
        ("efs-basic", "elasticfilesystem", "us-east-1", FS, false),
        (
            "efs-session-token",
            "elasticfilesystem",
            "eu-west-2",
            FS,
            true,
        ),
        (
            "s3files-basic",
            "s3files",
            "ca-central-1",
            "fs-0a1b2c3d4e5f60718",
            false,
        ),
        (
            "s3files-session-token",
            "s3files",
            "ca-central-1",
            "fs-0a1b2c3d4e5f60718",
            true,
        ),
    ];
    for (name, service, region, fs_id, token) in cases {
        let v = IamVerifier {
            secret_access_key: SECRET.into(),
            service: service.into(),
            region: region.into(),
            fs_id: fs_id.into(),
            access_key_id: Some(AKID.into()),
        };
        let der = vector_cert(name);
        let ok = v
            .verify(&der, during)
            .unwrap_or_else(|r| panic!("{name}: {r}"));
        assert_eq!(ok.session_token.is_some(), token, "{name}");
        assert_eq!(
            ok.access_point.is_some(),
            token,
            "{name}: the token cases have an access point"
        );

        let wrong = |v: IamVerifier| v.verify(&der, during).unwrap_err();
        let other_service = if service == "s3files" {
            "elasticfilesystem"
        } else {
            "s3files"
        };
        assert_eq!(
            wrong(IamVerifier {
                service: other_service.into(),
                ..v.clone()
            }),
            Refusal::WrongService {
                signed_for: service.into(),
                expected: other_service.into()
            }
        );
        assert_eq!(
            wrong(IamVerifier {
                secret_access_key: "other".into(),
                ..v.clone()
            }),
            Refusal::SignatureMismatch
        );
        assert_eq!(
            wrong(IamVerifier {
                region: "us-west-2".into(),
                ..v.clone()
            }),
            Refusal::SignatureMismatch
        );
        assert!(matches!(
            wrong(IamVerifier {
                fs_id: "fs-ffffffffffffffff0".into(),
                ..v.clone()
            }),
            Refusal::WrongFsId { .. }
        ));
        assert!(matches!(
            wrong(IamVerifier {
                access_key_id: Some("AKIDOTHER".into()),
                ..v.clone()
            }),
            Refusal::UnknownAccessKey { .. }
        ));
        assert!(matches!(
            v.verify(&der, at("2026-04-15T16:00:00Z")).unwrap_err(),
            Refusal::Expired { .. }
        ));
        assert!(matches!(
            v.verify(&der, at("2026-04-15T12:00:00Z")).unwrap_err(),
            Refusal::NotYetValid { .. }
        ));
    }
}
