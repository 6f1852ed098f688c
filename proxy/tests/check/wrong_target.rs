//! Failure 5, the wrong region or file system id: refused at bind by the mount target, or at
//! tls for a derived server name.

use super::*;

#[tokio::test]
async fn a_certificate_for_another_file_system_is_refused_at_bind() {
    let world = iam_bed().await;
    // The server name given, so TLS passes and the mount target itself judges the fs id.
    let args = with(
        iam_args(&world, &["--server-name", SERVER_NAME]),
        "--fs-id",
        OTHER_FS,
    );
    let out = check(&args, &env(&world, true)).await;
    out.assert_failed(
        "bind",
        &[
            &format!(
                "wrong region or file system id: the certificate was signed for fs id {OTHER_FS} \
                 (region us-east-1), but the mount target serves {FS}"
            ),
            "wrong file system id",
            &format!("check --fs-id: it must be the file system of this mount target ({FS})"),
        ],
    );
}

#[tokio::test]
async fn a_signature_for_another_region_is_refused_at_bind() {
    let world = iam_bed().await;
    let args = with(
        iam_args(&world, &["--server-name", SERVER_NAME]),
        "--region",
        "us-west-2",
    );
    let out = check(&args, &env(&world, true)).await;
    assert!(
        out.line("tls").contains("note: the certificate names"),
        "{}",
        out.all()
    );
    out.assert_failed(
        "bind",
        &[
            &format!(
                "wrong region or file system id: the certificate was signed for region us-west-2 \
                 (fs id {FS}), but the mount target serves region us-east-1"
            ),
            "signature mismatch",
            "check --region",
        ],
    );
}

#[tokio::test]
async fn a_derived_name_for_another_region_fails_at_tls() {
    let world = iam_bed().await;
    let out = check(
        &with(iam_args(&world, &[]), "--region", "us-west-2"),
        &env(&world, true),
    )
    .await;
    out.assert_failed(
        "tls",
        &[
            &format!(
                "wrong region or file system id: the mount target at {}",
                world.target.addr()
            ),
            &format!("serves {FS} (s3files, us-east-1)"),
            &format!("but --fs-id/--region expect {FS} (s3files, us-west-2)"),
            "check --region",
        ],
    );
}
