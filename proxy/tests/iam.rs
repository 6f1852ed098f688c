//! IAM end to end: the `efs-proxy` binary makes its client certificate from credentials
//! (environment, shared profiles, web identity, assume-role and SSO through a fake STS and
//! SSO portal, container endpoint, IMDSv2), the fake mount target verifies the SigV4
//! signature for real, refusals reach the proxy's log with their reason, certificates are
//! refreshed before they or the credentials expire, and secrets never reach the log.
//!
//! Every proxy here runs with a cleared environment (no AWS settings of the machine leak in)
//! and `AWS_EC2_METADATA_DISABLED=true` unless a test points IMDS at a loopback address, so
//! nothing is ever sent outside 127.0.0.0/8.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use efs_proxy_tests::bed::{AKID, EFS_SERVER_NAME, FS_ID as FS, REGION, SECRET, iam_verifier};
use efs_proxy_tests::client::null_call;
use efs_proxy_tests::credentials_endpoint::{CredentialsEndpoint, Reply};
use efs_proxy_tests::process::{ProxyProcess, run_to_exit_with_env};
use efs_proxy_tests::sts_sso_endpoint::{
    Call, Issued, SignedBy, StsSsoEndpoint, sso_cache_file_name,
};
use efs_proxy_tests::{BindBehaviour, IamVerifier, ProxyArgs, Refusal, SERVER_NAME, TestBed};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpStream;

const TOKEN: &str =
    "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQDexample+token/with=special+chars";
const LOG_WAIT: Duration = Duration::from_secs(15);
const HOUR: Duration = Duration::from_secs(3600);

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_efs-proxy"))
}

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/iam")
}

/// A fake S3 Files mount target for `FS` that checks IAM certificates, also named by its
/// EFS name.
async fn iam_bed() -> TestBed {
    TestBed::builder()
        .bind(BindBehaviour::ready(0x5a))
        .server_names(&[SERVER_NAME, EFS_SERVER_NAME])
        .iam(iam_verifier("s3files"))
        .start()
        .await
}

/// `run` with IAM for `FS` on S3 Files, to the bed's target, plus `extra`.
fn args(bed: &TestBed, extra: &[&str]) -> ProxyArgs {
    bed.run_with_iam()
        .with("--connect-timeout", "3")
        .with("--bind-timeout", "3")
        .and(extra)
}

fn env_credentials(secret: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", AKID),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_SESSION_TOKEN", TOKEN),
    ]
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// A NULL call through the proxy that must fail: the connection is closed without a reply.
async fn refused(proxy: &ProxyProcess) {
    let mut client = connect(proxy.addr()).await;
    assert!(
        null_call(&mut client, 1).await.is_none(),
        "the call must fail"
    );
}

/// Starts the proxy with `args` in exactly the environment `env`.
async fn spawn(args: ProxyArgs, env: &[(&str, &str)]) -> ProxyProcess {
    ProxyProcess::spawn_with_env(bin(), args, env)
        .await
        .unwrap()
}

/// Starts the proxy and checks that a NULL call gets through (certificate accepted, bind
/// done); panics with `what` and the proxy's log otherwise.
async fn bound(args: ProxyArgs, env: &[(&str, &str)], what: &str) -> ProxyProcess {
    let proxy = spawn(args, env).await;
    let mut client = connect(proxy.addr()).await;
    null_call(&mut client, 1)
        .await
        .unwrap_or_else(|| panic!("{what}: no bind\n{}", proxy.log()));
    proxy
}

/// Runs the proxy with `args` and `env`; it must fail to start (exit status 1, nothing on
/// stdout). Its stderr.
async fn start_failure(args: ProxyArgs, env: &[(&str, &str)]) -> String {
    let (code, stdout, stderr) = run_to_exit_with_env(bin(), &args, env).await.unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    stderr
}

/// What a credentials endpoint hands out: the test identity with `token`, for `expires_in`.
fn credentials(token: String, expires_in: Duration) -> Reply {
    Reply::Credentials {
        access_key_id: AKID.into(),
        secret_access_key: SECRET.into(),
        token,
        expires_in,
    }
}

/// The session token in each certificate the target saw, in order; every one of them must
/// have been accepted, and verify now as signed by `AKID`.
fn accepted_tokens(bed: &TestBed) -> Vec<Option<String>> {
    let seen = bed.target.observations();
    assert_eq!(
        seen.iam_accepted,
        seen.client_certs.len(),
        "{:?}",
        seen.iam_refusals
    );
    let v = iam_verifier("s3files");
    let verified = seen.client_certs.iter().map(|c| {
        let ok = v.verify(c, SystemTime::now()).unwrap();
        assert_eq!(ok.access_key_id, AKID);
        ok.session_token
    });
    verified.collect()
}

fn assert_no_secrets(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "a secret leaked into:\n{text}");
    }
}

// --- the verifier itself, against the reference certificates ---

fn vector_cert(name: &str) -> Vec<u8> {
    let pem = std::fs::read(vectors().join(format!("{name}.cert.pem"))).unwrap();
    CertificateDer::from_pem_slice(&pem).unwrap().to_vec()
}

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

// --- the proxy's certificate against the verifying fake target ---

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

#[tokio::test]
async fn connections_opened_after_a_refresh_present_the_new_certificate() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    // Certificates live 6 s and are renewed 3 s before they expire.
    let proxy = spawn(
        args(
            &bed,
            &[
                "--key",
                &key,
                "--cert-lifetime",
                "6",
                "--cert-refresh-margin",
                "3",
                "--cert-retry-ms",
                "500",
            ],
        ),
        &bed.env(&env_credentials(SECRET)),
    )
    .await;
    let mut before = connect(proxy.addr()).await;
    null_call(&mut before, 1).await.expect("first connection");
    proxy
        .wait_for_log("client certificate refreshed", LOG_WAIT)
        .await
        .unwrap();
    let mut after = connect(proxy.addr()).await;
    null_call(&mut after, 2).await.expect("second connection");
    // The connection opened before the refresh is untouched.
    null_call(&mut before, 3)
        .await
        .expect("first connection still open");

    let seen = bed.target.observations();
    assert_eq!(seen.iam_accepted, 2, "{:?}", seen.iam_refusals);
    assert_ne!(seen.client_certs[0], seen.client_certs[1]);
    let v = iam_verifier("s3files");
    let first = v.verify(
        &seen.client_certs[0],
        SystemTime::now() - Duration::from_secs(3),
    );
    let second = v.verify(&seen.client_certs[1], SystemTime::now()).unwrap();
    if let Ok(first) = first {
        assert!(second.signed_at > first.signed_at);
    }
    let log = proxy.log();
    assert!(log.contains("(before certificate expiry)"), "{log}");
}

/// The value of `AWS_CONTAINER_AUTHORIZATION_TOKEN` (an EKS Pod Identity token).
const CONTAINER_AUTH_TOKEN: &str = "eks-pod-identity-authorization-token-9c4e2b";

#[tokio::test]
async fn expiring_container_credentials_drive_the_refresh_and_never_reach_the_log() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    // Every request hands out a new token, valid 8 s; the proxy renews 5 s before expiry.
    let endpoint = CredentialsEndpoint::start(|n| {
        credentials(
            format!("session-token-{n}-{}", "x".repeat(40)),
            Duration::from_secs(8),
        )
    })
    .await
    .unwrap();
    let uri = endpoint.uri();
    let proxy = spawn(
        args(
            &bed,
            &[
                "--key",
                &key,
                "--credentials-refresh-margin",
                "5",
                "--cert-retry-ms",
                "500",
                "--log-level",
                "trace",
            ],
        ),
        // EKS Pod Identity also sends an authorization token, a secret too.
        &bed.env(&[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_AUTH_TOKEN),
        ]),
    )
    .await;
    let mut first = connect(proxy.addr()).await;
    null_call(&mut first, 1).await.expect("first connection");
    proxy
        .wait_for_log("client certificate refreshed", LOG_WAIT)
        .await
        .unwrap();
    let mut second = connect(proxy.addr()).await;
    null_call(&mut second, 2).await.expect("second connection");

    let tokens: Vec<String> = accepted_tokens(&bed).into_iter().flatten().collect();
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert!(tokens[0].starts_with("session-token-0-"), "{tokens:?}");
    assert_ne!(tokens[0], tokens[1]);
    assert!(endpoint.requests() >= 2);

    let log = proxy.log();
    assert!(log.contains("(before credentials expiry)"), "{log}");
    assert!(log.contains("from container credentials"), "{log}");
    assert!(log.contains("TRACE"), "trace logging is on");
    let mut secrets = vec![SECRET, CONTAINER_AUTH_TOKEN];
    secrets.extend(tokens.iter().map(String::as_str));
    assert_no_secrets(&log, &secrets);
    // Not even the token's URL-encoded form, nor its distinctive part.
    assert!(!log.contains(&"x".repeat(40)), "{log}");
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_certificate_and_retries_with_backoff() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    // Request 0 succeeds, 1 and 2 fail, later ones succeed.
    let endpoint = CredentialsEndpoint::start(|n| match n {
        // 403 is not retried inside the provider: one request per refresh attempt.
        1 | 2 => Reply::Fail(403),
        _ => credentials(format!("token-{n}"), HOUR),
    })
    .await
    .unwrap();
    let uri = endpoint.uri();
    let proxy = spawn(
        args(
            &bed,
            &[
                "--key",
                &key,
                "--cert-lifetime",
                "30",
                "--cert-refresh-margin",
                "28",
                "--cert-retry-ms",
                "1000",
            ],
        ),
        &bed.env(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)]),
    )
    .await;
    let log = proxy
        .wait_for_log("client certificate refresh failed (attempt 1)", LOG_WAIT)
        .await
        .unwrap();
    assert!(
        log.contains("keeping the current certificate, valid until"),
        "{log}"
    );
    // While refreshes fail, new connections still bind with the current certificate.
    let mut client = connect(proxy.addr()).await;
    null_call(&mut client, 1)
        .await
        .expect("bind with the kept certificate");
    let log = proxy
        .wait_for_log("client certificate refreshed", Duration::from_secs(30))
        .await
        .unwrap();
    assert!(log.contains("(attempt 2)"), "{log}");
    assert!(log.contains("retrying in 2s"), "backoff doubles: {log}");
    assert!(endpoint.requests() >= 4);
}

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

// --- credentials traded at STS or the SSO portal: web identity, assume-role, SSO ---
//
// The fake STS / SSO portal (`StsSsoEndpoint`) hands out the verifier's identity (`AKID`,
// `SECRET`) with a session token of the test's own, so a certificate the target accepts was
// signed with exactly what the portal returned. Nothing here may reach real AWS: every proxy
// gets the fake's address in `AWS_ENDPOINT_URL_STS` / `_SSO` and in the global
// `AWS_ENDPOINT_URL` (see `sts_sso_env`), profile-based sources also in the profile's
// `endpoint_url`, and each test asserts that the fake saw the call it expected (the proxy
// cannot have the secret from anywhere else). All of `iam.rs` passes in a network namespace
// with nothing but loopback (`unshare -n`).

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/efs-mount";
/// A web identity token (a JWT in real life; its content is not checked by STS's caller).
const WEB_IDENTITY_JWT: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDplZnMifQ.c2lnbmF0dXJlLW5vdC1jaGVja2Vk";
/// The keys of the source profile of an assume-role profile.
const SOURCE_AKID: &str = "AKIDSOURCEPROFILE";
const SOURCE_SECRET: &str = "source/profile+secret/KEYEXAMPLEKEYEXAMPLE";
/// The source profile's session token: its keys are temporary too (as after an MFA
/// `GetSessionToken`), so `AssumeRole` carries it in `x-amz-security-token`.
const SOURCE_TOKEN: &str = "source-profile-session/token+e1a5d7";

fn issued(session_token: &str) -> Issued {
    Issued {
        access_key_id: AKID.into(),
        secret_access_key: SECRET.into(),
        session_token: session_token.into(),
        expires_in: Duration::from_secs(3600),
    }
}

/// The endpoint overrides for the inner STS and SSO clients. aws-config builds those clients
/// from `ProviderConfig::client_config()`, whose `EnvServiceConfig` reads
/// `AWS_ENDPOINT_URL_<SERVICE>` and then `AWS_ENDPOINT_URL` from the environment, and a
/// profile's `services` section and `endpoint_url` only if the profile was already parsed:
/// true for assume-role and SSO (built from the profile), false for the environment's web
/// identity provider, built before any profile is read (aws-config 1.13.0
/// `web_identity_token.rs:244`, `provider_config.rs:226`; found in a network namespace
/// without any route). So the environment variables are what every source honours; both
/// are set, the global one as a backstop.
fn sts_sso_env(url: &str) -> [(&'static str, String); 3] {
    [
        ("AWS_ENDPOINT_URL_STS", url.to_string()),
        ("AWS_ENDPOINT_URL_SSO", url.to_string()),
        ("AWS_ENDPOINT_URL", url.to_string()),
    ]
}

/// `TestBed::env` with owned extras.
fn env_of<'a>(bed: &'a TestBed, extra: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    bed.env(&extra)
}

/// Starts the proxy at trace level with `extra` arguments and environment, and checks that
/// a NULL call gets through (certificate accepted, bind done); panics with `what` and the
/// proxy's log otherwise.
async fn bound_at_trace(
    bed: &TestBed,
    extra_args: &[&str],
    extra_env: &[(&'static str, String)],
    what: &str,
) -> ProxyProcess {
    let at_trace = args(bed, extra_args).with("--log-level", "trace");
    bound(at_trace, &env_of(bed, extra_env), what).await
}

/// The session token in the certificate the target accepted last.
fn last_session_token(bed: &TestBed) -> Option<String> {
    accepted_tokens(bed).pop().expect("a client certificate")
}

/// EKS IRSA: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` → STS `AssumeRoleWithWebIdentity`
/// (unsigned, the token in the form), and the role's credentials sign the certificate.
#[tokio::test]
async fn web_identity_credentials_from_sts_sign_certificates_and_never_reach_the_log() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    let token = "web-identity-session/token+from=STS-3f9a1c";
    let sts = StsSsoEndpoint::start(issued(token), &[]).await.unwrap();
    let token_file = bed.dir().join("web-identity-token");
    std::fs::write(&token_file, WEB_IDENTITY_JWT).unwrap();
    let mut extra = vec![
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            token_file.to_str().unwrap().to_string(),
        ),
        ("AWS_ROLE_ARN", ROLE_ARN.to_string()),
        ("AWS_ROLE_SESSION_NAME", "efs-proxy-irsa".to_string()),
    ];
    extra.extend(sts_sso_env(&sts.url()));
    let proxy = bound_at_trace(&bed, &["--key", &key], &extra, "web identity").await;

    assert_eq!(
        sts.calls(),
        vec![Call::AssumeRoleWithWebIdentity {
            role_arn: ROLE_ARN.into(),
            role_session_name: "efs-proxy-irsa".into(),
            web_identity_token: WEB_IDENTITY_JWT.into(),
            authorization: None,
        }]
    );
    assert_eq!(last_session_token(&bed).as_deref(), Some(token));
    let log = proxy.log();
    assert!(
        log.contains("access key AKIDEXAMPLE from web identity credentials"),
        "{log}"
    );
    assert!(log.contains("TRACE"), "trace logging is on");
    assert_no_secrets(&log, &[SECRET, token, "3f9a1c", WEB_IDENTITY_JWT]);
    drop(proxy);

    // Without its token file, web identity is configured but fails: the error names it and
    // STS is not called.
    std::fs::remove_file(&token_file).unwrap();
    let stderr = start_failure(args(&bed, &["--key", &key]), &env_of(&bed, &extra)).await;
    assert!(
        stderr.contains("AWS credentials from web identity failed"),
        "{stderr}"
    );
    // aws-config's error does not name the file, only the OS error.
    assert!(stderr.contains("No such file or directory"), "{stderr}");
    assert_eq!(sts.calls().len(), 1, "{:?}", sts.calls());
}

/// A profile with `role_arn` + `source_profile` (`--profile`): STS `AssumeRole`, SigV4-signed
/// with the source profile's keys (the fake STS recomputes the signature), and the assumed
/// role's credentials sign the certificate. A source profile with a wrong secret is refused
/// by STS, and the proxy's error names the profile and STS's reason.
#[tokio::test]
async fn assume_role_profiles_call_sts_signed_with_the_source_profile() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    let token = "assumed-role-session/token+from=STS-7be2d0";
    let sts = StsSsoEndpoint::start(issued(token), &[(SOURCE_AKID, SOURCE_SECRET)])
        .await
        .unwrap();
    let aws = bed.dir().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[src]\naws_access_key_id = {SOURCE_AKID}\naws_secret_access_key = {SOURCE_SECRET}\n\
             aws_session_token = {SOURCE_TOKEN}\n\
             [wrong-src]\naws_access_key_id = {SOURCE_AKID}\naws_secret_access_key = not-the-secret\n"
        ),
    )
    .unwrap();
    // The profile's own endpoint_url is honoured for assume-role too: a third override.
    std::fs::write(
        aws.join("config"),
        format!(
            "[profile mount]\nrole_arn = {ROLE_ARN}\nsource_profile = src\n\
             role_session_name = efs-proxy-assume\nendpoint_url = {url}\n\
             [profile wrong]\nrole_arn = {ROLE_ARN}\nsource_profile = wrong-src\n\
             endpoint_url = {url}\n",
            url = sts.url()
        ),
    )
    .unwrap();
    let extra = sts_sso_env(&sts.url());
    let env = env_of(&bed, &extra);
    let proxy = bound_at_trace(
        &bed,
        &["--key", &key, "--profile", "mount"],
        &extra,
        "assume-role",
    )
    .await;

    assert_eq!(
        sts.calls(),
        vec![Call::AssumeRole {
            role_arn: ROLE_ARN.into(),
            role_session_name: "efs-proxy-assume".into(),
            signed_by: SignedBy {
                access_key_id: SOURCE_AKID.into(),
                region: REGION.into(),
                service: "sts".into(),
                session_token: Some(SOURCE_TOKEN.into()),
            },
        }]
    );
    assert_eq!(last_session_token(&bed).as_deref(), Some(token));
    let log = proxy.log();
    assert!(
        log.contains("access key AKIDEXAMPLE from profile credentials"),
        "{log}"
    );
    assert!(log.contains("TRACE"), "trace logging is on");
    assert_no_secrets(
        &log,
        &[
            SECRET,
            SOURCE_SECRET,
            SOURCE_TOKEN,
            "e1a5d7",
            token,
            "7be2d0",
        ],
    );
    drop(proxy);

    let stderr = start_failure(args(&bed, &["--key", &key, "--profile", "wrong"]), &env).await;
    assert!(
        stderr.contains("profile \"wrong\" did not provide credentials"),
        "{stderr}"
    );
    assert!(stderr.contains("SignatureDoesNotMatch"), "{stderr}");
    assert_no_secrets(&stderr, &["not-the-secret", SOURCE_SECRET]);
    let calls = sts.calls();
    assert!(
        matches!(
            calls.last(),
            Some(Call::Refused { status: 403, reason, .. })
                if reason.starts_with("SigV4 signature mismatch for AKIDSOURCEPROFILE")
        ),
        "{calls:?}"
    );
}

/// IAM Identity Center: a profile with `sso_session` (token cache named after the session)
/// and a legacy one with `sso_start_url` (cache named after the URL), picked with
/// `AWS_PROFILE`. The cached access token goes to the portal's `GetRoleCredentials` as
/// `x-amz-sso_bearer_token`, and the role credentials sign the certificate.
#[tokio::test]
async fn sso_profiles_get_role_credentials_with_the_cached_token() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    let token = "sso-role-session/token+from=portal-51c0de";
    let portal = StsSsoEndpoint::start(issued(token), &[]).await.unwrap();
    let aws = bed.dir().join(".aws");
    let cache = aws.join("sso/cache");
    std::fs::create_dir_all(&cache).unwrap();
    let start_url = "https://d-1234567890.awsapps.com/start";
    let legacy_url = "https://d-0987654321.awsapps.com/start";
    // Each profile's endpoint_url is honoured for SSO too: a third override.
    std::fs::write(
        aws.join("config"),
        format!(
            "[profile sso-session]\nsso_session = corp\nsso_account_id = 123456789012\n\
             sso_role_name = EfsMount\nendpoint_url = {url}\n\
             [sso-session corp]\nsso_start_url = {start_url}\nsso_region = eu-west-1\n\
             sso_registration_scopes = sso:account:access\n\
             [profile sso-legacy]\nsso_start_url = {legacy_url}\nsso_region = eu-west-1\n\
             sso_account_id = 210987654321\nsso_role_name = EfsReader\nendpoint_url = {url}\n",
            url = portal.url()
        ),
    )
    .unwrap();
    // Valid for an hour: more than aws-config's 5-minute refresh window, so no SSO OIDC call.
    let expires_at = efs_proxy::iam::SigningTime::from_system_time(
        SystemTime::now() + Duration::from_secs(3600),
    )
    .rfc3339();
    let cached = |bearer: &str, url: &str| {
        serde_json::json!({
            "accessToken": bearer,
            "expiresAt": expires_at,
            "region": "eu-west-1",
            "startUrl": url,
        })
        .to_string()
    };
    let (bearer_session, bearer_legacy) = ("sso-bearer-session-a1b2c3", "sso-bearer-legacy-d4e5f6");
    std::fs::write(
        cache.join(sso_cache_file_name("corp")),
        cached(bearer_session, start_url),
    )
    .unwrap();
    std::fs::write(
        cache.join(sso_cache_file_name(legacy_url)),
        cached(bearer_legacy, legacy_url),
    )
    .unwrap();

    for profile in ["sso-session", "sso-legacy"] {
        let mut extra = vec![("AWS_PROFILE", profile.to_string())];
        extra.extend(sts_sso_env(&portal.url()));
        let proxy = bound_at_trace(&bed, &["--key", &key], &extra, profile).await;
        assert_eq!(last_session_token(&bed).as_deref(), Some(token));
        let log = proxy.log();
        assert!(
            log.contains("access key AKIDEXAMPLE from profile credentials"),
            "{log}"
        );
        assert!(log.contains("TRACE"), "trace logging is on");
        assert_no_secrets(
            &log,
            &[SECRET, token, "51c0de", bearer_session, bearer_legacy],
        );
    }
    assert_eq!(
        portal.calls(),
        vec![
            Call::GetRoleCredentials {
                role_name: "EfsMount".into(),
                account_id: "123456789012".into(),
                bearer_token: bearer_session.into(),
            },
            Call::GetRoleCredentials {
                role_name: "EfsReader".into(),
                account_id: "210987654321".into(),
                bearer_token: bearer_legacy.into(),
            },
        ]
    );
}

// --- credentials lookup failures ---

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

// --- the cert subcommand ---

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
