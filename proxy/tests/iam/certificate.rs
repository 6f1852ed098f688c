//! The proxy's certificate against the verifying fake target: environment credentials, key
//! files, and refusals logged with the target's reason.

use super::*;

#[tokio::test]
async fn a_certificate_made_from_environment_credentials_binds() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    let with_access_point = args(
        &bed,
        &["--key", &key, "--access-point", "fsap-0123456789abcdef0"],
    );
    let env = bed.env(&env_credentials(SECRET));
    let proxy = bound(with_access_point, &env, "NULL through IAM").await;

    let seen = bed.target.observations();
    assert_eq!(seen.iam_accepted, 1, "{:?}", seen.iam_refusals);
    // The server name was derived from --fs-id/--region/--service.
    assert_eq!(seen.server_names, vec![Some(SERVER_NAME.to_string())]);
    let ok = iam_verifier("s3files")
        .verify(&seen.client_certs[0], SystemTime::now())
        .unwrap();
    assert_eq!(ok.session_token.as_deref(), Some(TOKEN));
    assert_eq!(ok.access_point.as_deref(), Some("fsap-0123456789abcdef0"));
    let log = proxy.wait_for_log("READY", LOG_WAIT).await.unwrap();
    assert!(
        log.contains("access key AKIDEXAMPLE from environment credentials"),
        "{log}"
    );
}

#[tokio::test]
async fn without_a_key_file_the_proxy_generates_one_in_memory() {
    let bed = iam_bed().await;
    let env = bed.env(&env_credentials(SECRET));
    let proxy = bound(args(&bed, &[]), &env, "NULL through IAM").await;
    assert_eq!(accepted_tokens(&bed).len(), 1);
    let log = proxy.log();
    assert!(log.contains("generated an RSA-3072 key in memory"), "{log}");
    // Nothing was written next to the other files.
    assert!(!bed.dir().join("key.pem").exists());
}

#[tokio::test]
async fn a_missing_key_file_is_created_with_mode_0600_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let bed = iam_bed().await;
    let key = bed.dir().join("new-key.pem");
    let key_arg = key.to_str().unwrap();
    let env = bed.env(&env_credentials(SECRET));
    let first = bound(args(&bed, &["--key", key_arg]), &env, "NULL through IAM").await;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let content = std::fs::read(&key).unwrap();
    drop(first);
    let second = spawn(args(&bed, &["--key", key_arg]), &env).await;
    assert!(
        !second.log().contains("generated an RSA-3072 key"),
        "{}",
        second.log()
    );
    assert_eq!(
        std::fs::read(&key).unwrap(),
        content,
        "the key is reused, not replaced"
    );
}

/// Each way a certificate can be wrong is refused by the target, and the proxy's log says
/// which: the target answers bind with ERROR and the reason.
#[tokio::test]
async fn refused_certificates_are_logged_with_the_reason() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    let good_env = bed.env(&env_credentials(SECRET));
    let bad_env = bed.env(&env_credentials("not-the-secret"));

    // An expired certificate, made with `efs-proxy cert` 4 hours ago, presented with --cert.
    let expired = bed.dir().join("expired.pem");
    let four_hours_ago = efs_proxy::iam::SigningTime::from_system_time(
        SystemTime::now() - Duration::from_secs(4 * 3600),
    )
    .rfc3339();
    let (code, _, stderr) = run_to_exit_with_env(
        bin(),
        [
            "cert",
            "--fs-id",
            FS,
            "--region",
            REGION,
            "--service",
            "s3files",
            "--key",
            &key,
            "--out",
            expired.to_str().unwrap(),
            "--time",
            &four_hours_ago,
        ],
        &good_env,
    )
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stderr}");

    type Env<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(&str, ProxyArgs, &Env<'_>)> = vec![
        ("signature mismatch", args(&bed, &["--key", &key]), &bad_env),
        (
            "wrong service: the certificate is signed for elasticfilesystem, this mount target is s3files",
            args(&bed, &["--key", &key, "--server-name", SERVER_NAME]).with("--service", "efs"),
            &good_env,
        ),
        (
            "wrong file system id: the certificate is for fs-00000000000000001, this mount target serves fs-0123456789abcdef0",
            args(&bed, &["--key", &key, "--server-name", SERVER_NAME])
                .with("--fs-id", "fs-00000000000000001"),
            &good_env,
        ),
        (
            "certificate expired at",
            args(&bed, &["--cert", expired.to_str().unwrap(), "--key", &key]),
            &good_env,
        ),
    ];
    for (reason, args, env) in cases {
        let proxy = spawn(args, env).await;
        refused(&proxy).await;
        let expected = format!(
            "the mount target answered bind with ERROR: IAM authentication failed: {reason}"
        );
        let log = proxy
            .wait_for_log(&expected, LOG_WAIT)
            .await
            .unwrap_or_else(|log| panic!("expected {expected:?} in:\n{log}"));
        assert_no_secrets(&log, &[SECRET, "not-the-secret", TOKEN]);
    }
    let refusals = bed.target.observations().iam_refusals;
    assert_eq!(refusals.len(), 4, "{refusals:?}");
    assert_eq!(bed.target.observations().iam_accepted, 0);
}
