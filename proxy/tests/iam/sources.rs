//! Credential sources read locally (shared profiles, IMDSv2 on loopback) and what the proxy
//! says when none of them has credentials.

use super::*;

/// Shared config files: `--profile` picks a profile of ~/.aws/credentials and wins over
/// environment credentials (as the AWS CLI's `--profile`); `AWS_PROFILE` picks a profile of
/// ~/.aws/config whose `credential_process` prints the credentials.
#[tokio::test]
async fn profiles_from_the_shared_files_sign_certificates() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    let aws = bed.dir().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!("[dev]\naws_access_key_id = {AKID}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    let json = format!(
        r#"{{"Version":1,"AccessKeyId":"{AKID}","SecretAccessKey":"{SECRET}","SessionToken":"process-token"}}"#
    );
    let script = bed.dir().join("creds.sh");
    std::fs::write(&script, format!("#!/bin/sh\necho '{json}'\n")).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        aws.join("config"),
        format!(
            "[profile proc]\ncredential_process = {}\n",
            script.display()
        ),
    )
    .unwrap();

    let wrong_env = bed.env(&env_credentials("not-the-secret"));
    let with_profile = args(&bed, &["--key", &key, "--profile", "dev"]);
    let proxy = bound(with_profile, &wrong_env, "--profile dev").await;
    assert!(
        proxy.log().contains("from profile credentials"),
        "{}",
        proxy.log()
    );

    let env = bed.env(&[("AWS_PROFILE", "proc")]);
    let proxy = bound(args(&bed, &["--key", &key]), &env, "AWS_PROFILE=proc").await;
    assert_eq!(
        accepted_tokens(&bed),
        vec![None, Some("process-token".to_string())]
    );
    assert_no_secrets(&proxy.log(), &[SECRET, "process-token"]);
}

/// EC2 instance metadata (IMDSv2, on loopback): the last source of the chain.
#[tokio::test]
async fn instance_metadata_credentials_sign_certificates() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    let imds =
        CredentialsEndpoint::start(|n| credentials(format!("imds-role-token-{n}"), 6 * HOUR))
            .await
            .unwrap();
    let endpoint = imds.imds_endpoint();
    let mut env = bed.env(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint)]);
    env.retain(|(k, _)| *k != "AWS_EC2_METADATA_DISABLED");
    let proxy = bound(args(&bed, &["--key", &key]), &env, "IMDS credentials").await;
    assert!(
        proxy.log().contains("from instance metadata credentials"),
        "{}",
        proxy.log()
    );
    assert_eq!(
        accepted_tokens(&bed),
        vec![Some("imds-role-token-0".to_string())]
    );
}

#[tokio::test]
async fn without_credentials_the_proxy_says_what_it_tried() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    let started = Instant::now();
    let stderr = start_failure(args(&bed, &["--key", &key]), &bed.env(&[])).await;
    for needle in [
        "no AWS credentials found; tried, in order: environment",
        "profile",
        "web identity",
        "container",
        "instance metadata",
        "AWS_ACCESS_KEY_ID",
    ] {
        assert!(
            stderr.contains(needle),
            "{needle:?} missing from:\n{stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// IMDS that accepts connections and never answers (a black hole on loopback): the lookup
/// gives up after its bounded timeout, naming instance metadata.
#[tokio::test]
async fn a_silent_instance_metadata_service_fails_within_the_timeout() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let mut env = bed.env(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint)]);
    env.retain(|(k, _)| *k != "AWS_EC2_METADATA_DISABLED");
    let started = Instant::now();
    let stderr = start_failure(args(&bed, &["--key", &key]), &env).await;
    let elapsed = started.elapsed();
    assert!(stderr.contains("instance metadata"), "{stderr}");
    assert!(
        elapsed < Duration::from_secs(9),
        "took {elapsed:?}: {stderr}"
    );
    eprintln!("silent IMDS: failed after {elapsed:?}");
    held.abort();
}
