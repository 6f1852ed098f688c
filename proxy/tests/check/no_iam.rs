//! Failure 3, TLS without IAM: a certificate without a SigV4 signature, or the test PKI's
//! plain client certificate, refused at bind.

use super::*;

#[tokio::test]
async fn a_certificate_without_iam_signature_is_tls_without_iam() {
    let world = iam_bed().await;
    let out = check(&iam_args(&world, &["--no-iam"]), &env(&world, false)).await;
    assert!(out.line("credentials").starts_with("— "), "{}", out.all());
    assert!(out.line("tls").starts_with("✓ "), "{}", out.all());
    assert!(
        out.line("client-cert").contains("no SigV4 signature"),
        "{}",
        out.all()
    );
    out.assert_failed(
        "bind",
        &[
            "TLS without IAM: the mount target requires IAM and refused the client certificate",
            "no SigV4 signature",
            "IAM authentication failed: no IAM signature",
            "Fix: turn IAM on: drop --cert/--no-iam and pass --fs-id",
        ],
    );
    assert_eq!(world.target.observations().iam_refusals.len(), 1);
}

#[tokio::test]
async fn a_plain_client_certificate_is_tls_without_iam() {
    let world = iam_bed().await;
    let out = check_with_plain_cert(&world).await;
    out.assert_failed(
        "bind",
        &[
            "TLS without IAM: ",
            "neither a SigV4 signature nor a file system id",
            "--fs-id ID --region REGION --service",
        ],
    );
}
