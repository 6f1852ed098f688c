//! The `cert` subcommand: the reference certificate reproduced, the session token redacted,
//! certificates without IAM.

use super::*;

/// `efs-proxy cert` with the vectors' key and inputs (EFS, `region`, signed at
/// 2026-04-15T12:34:56Z for `client-host.example`, client source `test`, `--explain`) and
/// `extra`, with the environment's credentials (and `token`, if any): its exit status, its
/// output, and the certificate it wrote, as DER.
async fn cert_command(
    region: &str,
    extra: &[&str],
    token: Option<&str>,
) -> (Option<i32>, String, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cert.pem");
    let key = vectors().join("test-key-rsa3072.pem");
    let mut env = vec![
        ("HOME", dir.path().to_str().unwrap()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ACCESS_KEY_ID", AKID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    env.extend(token.map(|t| ("AWS_SESSION_TOKEN", t)));
    let args = ProxyArgs::new("cert")
        .with("--fs-id", FS)
        .with("--region", region)
        .with("--service", "efs")
        .with("--key", key.to_str().unwrap())
        .with("--out", out.to_str().unwrap())
        .with("--time", "2026-04-15T12:34:56Z")
        .with("--common-name", "client-host.example")
        .with("--client-source", "test")
        .and(&["--explain"])
        .and(extra);
    let (code, stdout, stderr) = run_to_exit_with_env(bin(), &args, &env).await.unwrap();
    if code != Some(0) {
        return (code, stdout, stderr, Vec::new());
    }
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&out).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o600,
        "the certificate may hold a session token"
    );
    let made = CertificateDer::from_pem_slice(&std::fs::read(&out).unwrap()).unwrap();
    (code, stdout, stderr, made.to_vec())
}

/// `efs-proxy cert` with the vectors' inputs writes the reference certificate, byte for
/// byte, and `--explain` shows the reference canonical request and signature.
#[tokio::test]
async fn the_cert_command_reproduces_the_reference_certificate() {
    let (code, stdout, stderr, made) = cert_command("us-east-1", &[], None).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(made, vector_cert("efs-basic"));
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(vectors().join("iam-cert-vectors.json")).unwrap(),
    )
    .unwrap();
    let case = &doc["cases"][0];
    assert_eq!(case["name"], "efs-basic");
    for field in [
        "canonical_request",
        "string_to_sign",
        "signature",
        "public_key_sha1",
    ] {
        let value = case[field].as_str().unwrap();
        assert!(stdout.contains(value), "{field} missing from:\n{stdout}");
    }
    assert_no_secrets(&stdout, &[SECRET]);
    assert_no_secrets(&stderr, &[SECRET]);
}

#[tokio::test]
async fn the_cert_command_redacts_the_session_token() {
    let extra = [
        "--access-point",
        "fsap-0123456789abcdef0",
        "--log-level",
        "trace",
    ];
    let (code, stdout, stderr, made) = cert_command("eu-west-2", &extra, Some(TOKEN)).await;
    assert_eq!(code, Some(0), "{stderr}");
    // Still the reference certificate (which does carry the token, as it must).
    assert_eq!(made, vector_cert("efs-session-token"));
    let redacted = format!(
        "X-Amz-Security-Token=<session token, {} characters, redacted>",
        TOKEN.len()
    );
    assert!(stdout.contains(&redacted), "{stdout}");
    assert!(stdout.contains("241207dbaadc22646372e80219f450840394b07c1342d1633f9c5938d6897b8b"));
    let encoded = "IQoJb3JpZ2luX2VjEJr%2F";
    assert_no_secrets(&stdout, &[SECRET, TOKEN, encoded]);
    assert_no_secrets(&stderr, &[SECRET, TOKEN, encoded]);
}

/// `--no-iam` makes efs-utils' certificate for TLS mounts without `iam`: no credentials
/// needed, and a verifying target refuses it for lack of a signature.
#[tokio::test]
async fn no_iam_certificates_need_no_credentials_and_carry_no_signature() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    let proxy = spawn(args(&bed, &["--key", &key, "--no-iam"]), &bed.env(&[])).await;
    refused(&proxy).await;
    proxy
        .wait_for_log("IAM authentication failed: no IAM signature", LOG_WAIT)
        .await
        .unwrap();
    assert!(
        proxy.log().contains("without IAM signature"),
        "{}",
        proxy.log()
    );
}
