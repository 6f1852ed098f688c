//! Configuration and credentials: missing credentials, a missing CA file, usage errors.

use super::*;

#[tokio::test]
async fn missing_credentials_fail_the_credentials_step() {
    let world = iam_bed().await;
    let out = check(&iam_args(&world, &[]), &env(&world, false)).await;
    out.assert_failed(
        "credentials",
        &[
            "no AWS credentials found; tried, in order: environment",
            "Fix: set AWS_ACCESS_KEY_ID",
        ],
    );
    assert!(out.line("config").starts_with("✓ "));
}

#[tokio::test]
async fn a_missing_ca_file_fails_the_configuration_step() {
    let world = iam_bed().await;
    let args = with(iam_args(&world, &[]), "--ca-file", "/nonexistent/ca.pem");
    let out = check(&args, &env(&world, true)).await;
    out.assert_failed(
        "config",
        &["/nonexistent/ca.pem", "--ca-file must be a PEM file"],
    );
}

#[tokio::test]
async fn usage_errors_exit_with_status_2() {
    let world = iam_bed().await;
    let out = check(&["check".to_string()], &env(&world, false)).await;
    assert_eq!(out.code, Some(2), "{}", out.all());
    let out = check(
        &["check".into(), "--fs-id".into(), FS.into()],
        &env(&world, false),
    )
    .await;
    assert_eq!(out.code, Some(2), "{}", out.all());
}
