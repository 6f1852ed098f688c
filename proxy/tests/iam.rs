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

use efs_proxy_tests::credentials_endpoint::{CredentialsEndpoint, Reply};
use efs_proxy_tests::process::{ProxyProcess, run_to_exit_with_env};
use efs_proxy_tests::sts_sso_endpoint::{
    Call, Issued, SignedBy, StsSsoEndpoint, sso_cache_file_name,
};
use efs_proxy_tests::{
    Backend, BindBehaviour, FakeMountTarget, IamVerifier, MountTargetConfig, PkiFiles, Refusal,
    Responder, SERVER_NAME, ServerTls, TestPki,
};
use efs_rpc::{CallHeader, Record, RpcMessage, parse_accepted_reply};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FS: &str = "fs-0123456789abcdef0";
const REGION: &str = "us-east-1";
const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TOKEN: &str =
    "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQDexample+token/with=special+chars";
const LOG_WAIT: Duration = Duration::from_secs(15);
/// The EFS name of `FS` in `REGION`, also on the test server certificate.
const EFS_SERVER_NAME: &str = "fs-0123456789abcdef0.efs.us-east-1.amazonaws.com";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_efs-proxy"))
}

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/iam")
}

fn verifier(service: &str) -> IamVerifier {
    IamVerifier {
        secret_access_key: SECRET.into(),
        service: service.into(),
        region: REGION.into(),
        fs_id: FS.into(),
        access_key_id: Some(AKID.into()),
    }
}

struct World {
    target: FakeMountTarget,
    files: PkiFiles,
    dir: tempfile::TempDir,
}

impl World {
    /// A fake S3 Files mount target for `FS` that checks IAM certificates.
    async fn new() -> World {
        Self::with_verifier(verifier("s3files")).await
    }

    async fn with_verifier(iam: IamVerifier) -> World {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(&[SERVER_NAME, EFS_SERVER_NAME]).unwrap();
        let files = pki.write(&dir.path().join("pki")).unwrap();
        let target = FakeMountTarget::start(
            "127.0.0.1:0".parse().unwrap(),
            MountTargetConfig {
                tls: Some(ServerTls {
                    chain: vec![pki.server.cert_der.clone()],
                    key: pki.server.private_key(),
                    require_client_cert: true,
                }),
                bind: BindBehaviour::ready(0x5a),
                backend: Backend::Responder(Responder::Echo),
                max_record_size: efs_rpc::DEFAULT_MAX_RECORD_SIZE,
                iam: Some(iam),
            },
        )
        .await
        .unwrap();
        World { target, files, dir }
    }

    /// A copy of the vectors' RSA-3072 key (generating one per test would be slow).
    fn key(&self) -> String {
        let path = self.dir.path().join("key.pem");
        if !path.exists() {
            std::fs::copy(vectors().join("test-key-rsa3072.pem"), &path).unwrap();
        }
        path.to_str().unwrap().to_string()
    }

    /// `run` with IAM for `FS` on S3 Files, to this target.
    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "run",
            "--listen",
            "127.0.0.1:0",
            "--fs-id",
            FS,
            "--region",
            REGION,
            "--service",
            "s3files",
            "--target",
            &self.target.addr().to_string(),
            "--ca-file",
            self.files.ca.to_str().unwrap(),
            "--connect-timeout",
            "3",
            "--bind-timeout",
            "3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// An environment with nothing but what is given, a HOME without ~/.aws, and IMDS off.
    fn env<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let home = self.dir.path().to_str().unwrap();
        let mut env = vec![("HOME", home), ("AWS_EC2_METADATA_DISABLED", "true")];
        env.extend_from_slice(extra);
        env
    }
}

/// `args` with the value of `key` replaced.
fn with(mut args: Vec<String>, key: &str, value: &str) -> Vec<String> {
    let i = args.iter().position(|a| a == key).expect("option present");
    args[i + 1] = value.to_string();
    args
}

fn env_credentials(secret: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", AKID),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_SESSION_TOKEN", TOKEN),
    ]
}

async fn null_call(stream: &mut TcpStream, xid: u32) -> Option<()> {
    let message = RpcMessage::call(xid, CallHeader::new(100_003, 4, 0))
        .encode()
        .unwrap();
    stream
        .write_all(Record::from_message(&message).unwrap().wire())
        .await
        .ok()?;
    let mut mark = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut mark))
        .await
        .ok()?
        .ok()?;
    let mut reply = vec![0; (u32::from_be_bytes(mark) & 0x7fff_ffff) as usize];
    stream.read_exact(&mut reply).await.ok()?;
    let (got, _) = parse_accepted_reply(&reply).ok()?;
    (got == xid).then_some(())
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
    let world = World::new().await;
    let key = world.key();
    let proxy = ProxyProcess::spawn_with_env(
        bin(),
        world.args(&["--key", &key, "--access-point", "fsap-0123456789abcdef0"]),
        &world.env(&env_credentials(SECRET)),
    )
    .await
    .unwrap();
    let mut client = connect(proxy.addr()).await;
    null_call(&mut client, 7).await.expect("NULL through IAM");

    let seen = world.target.observations();
    assert_eq!(seen.iam_accepted, 1, "{:?}", seen.iam_refusals);
    // The server name was derived from --fs-id/--region/--service.
    assert_eq!(seen.server_names, vec![Some(SERVER_NAME.to_string())]);
    let ok = verifier("s3files")
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
    let world = World::new().await;
    let proxy =
        ProxyProcess::spawn_with_env(bin(), world.args(&[]), &world.env(&env_credentials(SECRET)))
            .await
            .unwrap();
    let mut client = connect(proxy.addr()).await;
    null_call(&mut client, 1).await.expect("NULL through IAM");
    assert_eq!(world.target.observations().iam_accepted, 1);
    let log = proxy.log();
    assert!(log.contains("generated an RSA-3072 key in memory"), "{log}");
    // Nothing was written next to the other files.
    assert!(!world.dir.path().join("key.pem").exists());
}

#[tokio::test]
async fn a_missing_key_file_is_created_with_mode_0600_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new().await;
    let key = world.dir.path().join("new-key.pem");
    let key_arg = key.to_str().unwrap();
    let env = world.env(&env_credentials(SECRET));
    let first = ProxyProcess::spawn_with_env(bin(), world.args(&["--key", key_arg]), &env)
        .await
        .unwrap();
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let content = std::fs::read(&key).unwrap();
    let mut client = connect(first.addr()).await;
    null_call(&mut client, 1).await.expect("NULL through IAM");
    drop(first);
    let second = ProxyProcess::spawn_with_env(bin(), world.args(&["--key", key_arg]), &env)
        .await
        .unwrap();
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
    let world = World::new().await;
    let key = world.key();
    let good_env = world.env(&env_credentials(SECRET));
    let bad_env = world.env(&env_credentials("not-the-secret"));

    // An expired certificate, made with `efs-proxy cert` 4 hours ago, presented with --cert.
    let expired = world.dir.path().join("expired.pem");
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
    let cases: Vec<(&str, Vec<String>, &Env)> = vec![
        ("signature mismatch", world.args(&["--key", &key]), &bad_env),
        (
            "wrong service: the certificate is signed for elasticfilesystem, this mount target is s3files",
            with(
                world.args(&["--key", &key, "--server-name", SERVER_NAME]),
                "--service",
                "efs",
            ),
            &good_env,
        ),
        (
            "wrong file system id: the certificate is for fs-00000000000000001, this mount target serves fs-0123456789abcdef0",
            with(
                world.args(&["--key", &key, "--server-name", SERVER_NAME]),
                "--fs-id",
                "fs-00000000000000001",
            ),
            &good_env,
        ),
        (
            "certificate expired at",
            world.args(&["--cert", expired.to_str().unwrap(), "--key", &key]),
            &good_env,
        ),
    ];
    for (reason, args, env) in cases {
        let proxy = ProxyProcess::spawn_with_env(bin(), &args, env)
            .await
            .unwrap();
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
    let refusals = world.target.observations().iam_refusals;
    assert_eq!(refusals.len(), 4, "{refusals:?}");
    assert_eq!(world.target.observations().iam_accepted, 0);
}

#[tokio::test]
async fn connections_opened_after_a_refresh_present_the_new_certificate() {
    let world = World::new().await;
    let key = world.key();
    // Certificates live 6 s and are renewed 3 s before they expire.
    let proxy = ProxyProcess::spawn_with_env(
        bin(),
        world.args(&[
            "--key",
            &key,
            "--cert-lifetime",
            "6",
            "--cert-refresh-margin",
            "3",
            "--cert-retry-ms",
            "500",
        ]),
        &world.env(&env_credentials(SECRET)),
    )
    .await
    .unwrap();
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

    let seen = world.target.observations();
    assert_eq!(seen.iam_accepted, 2, "{:?}", seen.iam_refusals);
    assert_ne!(seen.client_certs[0], seen.client_certs[1]);
    let v = verifier("s3files");
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
    let world = World::new().await;
    let key = world.key();
    // Every request hands out a new token, valid 8 s; the proxy renews 5 s before expiry.
    let endpoint = CredentialsEndpoint::start(|n| Reply::Credentials {
        access_key_id: AKID.into(),
        secret_access_key: SECRET.into(),
        token: format!("session-token-{n}-{}", "x".repeat(40)),
        expires_in: Duration::from_secs(8),
    })
    .await
    .unwrap();
    let uri = endpoint.uri();
    let proxy = ProxyProcess::spawn_with_env(
        bin(),
        world.args(&[
            "--key",
            &key,
            "--credentials-refresh-margin",
            "5",
            "--cert-retry-ms",
            "500",
            "--log-level",
            "trace",
        ]),
        // EKS Pod Identity also sends an authorization token, a secret too.
        &world.env(&[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_AUTH_TOKEN),
        ]),
    )
    .await
    .unwrap();
    let mut first = connect(proxy.addr()).await;
    null_call(&mut first, 1).await.expect("first connection");
    proxy
        .wait_for_log("client certificate refreshed", LOG_WAIT)
        .await
        .unwrap();
    let mut second = connect(proxy.addr()).await;
    null_call(&mut second, 2).await.expect("second connection");

    let seen = world.target.observations();
    assert_eq!(seen.iam_accepted, 2, "{:?}", seen.iam_refusals);
    let v = verifier("s3files");
    let tokens: Vec<String> = seen
        .client_certs
        .iter()
        .map(|c| {
            v.verify(c, SystemTime::now())
                .unwrap()
                .session_token
                .unwrap()
        })
        .collect();
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
    let world = World::new().await;
    let key = world.key();
    // Request 0 succeeds, 1 and 2 fail, later ones succeed.
    let endpoint = CredentialsEndpoint::start(|n| match n {
        // 403 is not retried inside the provider: one request per refresh attempt.
        1 | 2 => Reply::Fail(403),
        _ => Reply::Credentials {
            access_key_id: AKID.into(),
            secret_access_key: SECRET.into(),
            token: format!("token-{n}"),
            expires_in: Duration::from_secs(3600),
        },
    })
    .await
    .unwrap();
    let uri = endpoint.uri();
    let proxy = ProxyProcess::spawn_with_env(
        bin(),
        world.args(&[
            "--key",
            &key,
            "--cert-lifetime",
            "30",
            "--cert-refresh-margin",
            "28",
            "--cert-retry-ms",
            "1000",
        ]),
        &world.env(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)]),
    )
    .await
    .unwrap();
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
    let world = World::new().await;
    let key = world.key();
    let aws = world.dir.path().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!("[dev]\naws_access_key_id = {AKID}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    let json = format!(
        r#"{{"Version":1,"AccessKeyId":"{AKID}","SecretAccessKey":"{SECRET}","SessionToken":"process-token"}}"#
    );
    let script = world.dir.path().join("creds.sh");
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

    let wrong_env = world.env(&env_credentials("not-the-secret"));
    let proxy = ProxyProcess::spawn_with_env(
        bin(),
        world.args(&["--key", &key, "--profile", "dev"]),
        &wrong_env,
    )
    .await
    .unwrap();
    let mut client = connect(proxy.addr()).await;
    null_call(&mut client, 1)
        .await
        .expect("--profile dev binds");
    assert!(
        proxy.log().contains("from profile credentials"),
        "{}",
        proxy.log()
    );

    let proxy = ProxyProcess::spawn_with_env(
        bin(),
        world.args(&["--key", &key]),
        &world.env(&[("AWS_PROFILE", "proc")]),
    )
    .await
    .unwrap();
    let mut client = connect(proxy.addr()).await;
    null_call(&mut client, 2)
        .await
        .expect("AWS_PROFILE=proc binds");

    let seen = world.target.observations();
    assert_eq!(seen.iam_accepted, 2, "{:?}", seen.iam_refusals);
    let v = verifier("s3files");
    let tokens: Vec<Option<String>> = seen
        .client_certs
        .iter()
        .map(|c| v.verify(c, SystemTime::now()).unwrap().session_token)
        .collect();
    assert_eq!(tokens, vec![None, Some("process-token".to_string())]);
    assert_no_secrets(&proxy.log(), &[SECRET, "process-token"]);
}

/// EC2 instance metadata (IMDSv2, on loopback): the last source of the chain.
#[tokio::test]
async fn instance_metadata_credentials_sign_certificates() {
    let world = World::new().await;
    let key = world.key();
    let imds = CredentialsEndpoint::start(|n| Reply::Credentials {
        access_key_id: AKID.into(),
        secret_access_key: SECRET.into(),
        token: format!("imds-role-token-{n}"),
        expires_in: Duration::from_secs(6 * 3600),
    })
    .await
    .unwrap();
    let endpoint = imds.imds_endpoint();
    let mut env = world.env(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint)]);
    env.retain(|(k, _)| *k != "AWS_EC2_METADATA_DISABLED");
    let proxy = ProxyProcess::spawn_with_env(bin(), world.args(&["--key", &key]), &env)
        .await
        .unwrap();
    let mut client = connect(proxy.addr()).await;
    null_call(&mut client, 1)
        .await
        .expect("IMDS credentials bind");
    assert!(
        proxy.log().contains("from instance metadata credentials"),
        "{}",
        proxy.log()
    );
    let seen = world.target.observations();
    let ok = verifier("s3files")
        .verify(&seen.client_certs[0], SystemTime::now())
        .unwrap();
    assert_eq!(ok.session_token.as_deref(), Some("imds-role-token-0"));
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

/// `World::env` with owned extras.
fn env_of<'a>(world: &'a World, extra: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    world.env(&extra)
}

/// Starts the proxy at trace level with `extra` arguments and environment, and checks that
/// a NULL call gets through (certificate accepted, bind done); panics with `what` and the
/// proxy's log otherwise.
async fn bound_at_trace(
    world: &World,
    extra_args: &[&str],
    extra_env: &[(&'static str, String)],
    what: &str,
) -> ProxyProcess {
    let mut args = extra_args.to_vec();
    args.extend(["--log-level", "trace"]);
    let proxy = ProxyProcess::spawn_with_env(bin(), world.args(&args), &env_of(world, extra_env))
        .await
        .unwrap();
    let mut client = connect(proxy.addr()).await;
    null_call(&mut client, 1)
        .await
        .unwrap_or_else(|| panic!("{what}: no bind\n{}", proxy.log()));
    proxy
}

/// The session token in the certificate the target accepted last.
fn last_session_token(world: &World) -> Option<String> {
    let seen = world.target.observations();
    assert!(seen.iam_accepted > 0, "{:?}", seen.iam_refusals);
    let cert = seen.client_certs.last().expect("a client certificate");
    let ok = verifier("s3files").verify(cert, SystemTime::now()).unwrap();
    assert_eq!(ok.access_key_id, AKID);
    ok.session_token
}

/// EKS IRSA: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` → STS `AssumeRoleWithWebIdentity`
/// (unsigned, the token in the form), and the role's credentials sign the certificate.
#[tokio::test]
async fn web_identity_credentials_from_sts_sign_certificates_and_never_reach_the_log() {
    let world = World::new().await;
    let key = world.key();
    let token = "web-identity-session/token+from=STS-3f9a1c";
    let sts = StsSsoEndpoint::start(issued(token), &[]).await.unwrap();
    let token_file = world.dir.path().join("web-identity-token");
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
    let proxy = bound_at_trace(&world, &["--key", &key], &extra, "web identity").await;

    assert_eq!(
        sts.calls(),
        vec![Call::AssumeRoleWithWebIdentity {
            role_arn: ROLE_ARN.into(),
            role_session_name: "efs-proxy-irsa".into(),
            web_identity_token: WEB_IDENTITY_JWT.into(),
            authorization: None,
        }]
    );
    assert_eq!(last_session_token(&world).as_deref(), Some(token));
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
    let (code, _, stderr) =
        run_to_exit_with_env(bin(), world.args(&["--key", &key]), &env_of(&world, &extra))
            .await
            .unwrap();
    assert_eq!(code, Some(1), "{stderr}");
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
    let world = World::new().await;
    let key = world.key();
    let token = "assumed-role-session/token+from=STS-7be2d0";
    let sts = StsSsoEndpoint::start(issued(token), &[(SOURCE_AKID, SOURCE_SECRET)])
        .await
        .unwrap();
    let aws = world.dir.path().join(".aws");
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
    let env = env_of(&world, &extra);
    let proxy = bound_at_trace(
        &world,
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
    assert_eq!(last_session_token(&world).as_deref(), Some(token));
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

    let (code, _, stderr) = run_to_exit_with_env(
        bin(),
        world.args(&["--key", &key, "--profile", "wrong"]),
        &env,
    )
    .await
    .unwrap();
    assert_eq!(code, Some(1), "{stderr}");
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
    let world = World::new().await;
    let key = world.key();
    let token = "sso-role-session/token+from=portal-51c0de";
    let portal = StsSsoEndpoint::start(issued(token), &[]).await.unwrap();
    let aws = world.dir.path().join(".aws");
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
        let proxy = bound_at_trace(&world, &["--key", &key], &extra, profile).await;
        assert_eq!(last_session_token(&world).as_deref(), Some(token));
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
    let world = World::new().await;
    let key = world.key();
    let started = Instant::now();
    let (code, stdout, stderr) =
        run_to_exit_with_env(bin(), world.args(&["--key", &key]), &world.env(&[]))
            .await
            .unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
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
    let world = World::new().await;
    let key = world.key();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let mut env = world.env(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint)]);
    env.retain(|(k, _)| *k != "AWS_EC2_METADATA_DISABLED");
    let started = Instant::now();
    let (code, _, stderr) = run_to_exit_with_env(bin(), world.args(&["--key", &key]), &env)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("instance metadata"), "{stderr}");
    assert!(
        elapsed < Duration::from_secs(9),
        "took {elapsed:?}: {stderr}"
    );
    eprintln!("silent IMDS: failed after {elapsed:?}");
    held.abort();
}

// --- the cert subcommand ---

/// `efs-proxy cert` with the vectors' inputs writes the reference certificate, byte for
/// byte, and `--explain` shows the reference canonical request and signature.
#[tokio::test]
async fn the_cert_command_reproduces_the_reference_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cert.pem");
    let key = vectors().join("test-key-rsa3072.pem");
    let env = [
        ("HOME", dir.path().to_str().unwrap()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ACCESS_KEY_ID", AKID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    let (code, stdout, stderr) = run_to_exit_with_env(
        bin(),
        [
            "cert",
            "--fs-id",
            FS,
            "--region",
            "us-east-1",
            "--service",
            "efs",
            "--key",
            key.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--time",
            "2026-04-15T12:34:56Z",
            "--common-name",
            "client-host.example",
            "--client-source",
            "test",
            "--explain",
        ],
        &env,
    )
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&out).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o600,
        "the certificate may hold a session token"
    );
    let made = std::fs::read(&out).unwrap();
    let reference = std::fs::read(vectors().join("efs-basic.cert.pem")).unwrap();
    assert_eq!(
        CertificateDer::from_pem_slice(&made).unwrap(),
        CertificateDer::from_pem_slice(&reference).unwrap()
    );
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
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cert.pem");
    let key = vectors().join("test-key-rsa3072.pem");
    let env = [
        ("HOME", dir.path().to_str().unwrap()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ACCESS_KEY_ID", AKID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_SESSION_TOKEN", TOKEN),
    ];
    let (code, stdout, stderr) = run_to_exit_with_env(
        bin(),
        [
            "cert",
            "--fs-id",
            FS,
            "--region",
            "eu-west-2",
            "--service",
            "efs",
            "--key",
            key.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--time",
            "2026-04-15T12:34:56Z",
            "--common-name",
            "client-host.example",
            "--client-source",
            "test",
            "--access-point",
            "fsap-0123456789abcdef0",
            "--explain",
            "--log-level",
            "trace",
        ],
        &env,
    )
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    // Still the reference certificate (which does carry the token, as it must).
    let made = std::fs::read(&out).unwrap();
    let reference = std::fs::read(vectors().join("efs-session-token.cert.pem")).unwrap();
    assert_eq!(
        CertificateDer::from_pem_slice(&made).unwrap(),
        CertificateDer::from_pem_slice(&reference).unwrap()
    );
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

// --- command-line contract ---

#[tokio::test]
async fn iam_options_are_documented_and_checked() {
    let env: [(&str, &str); 1] = [("AWS_EC2_METADATA_DISABLED", "true")];
    let (code, stdout, _) = run_to_exit_with_env(bin(), ["run", "--help"], &env)
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    for option in [
        "--fs-id",
        "--region",
        "--service",
        "--access-point",
        "--profile",
        "--az-id",
        "--key",
        "--no-iam",
    ] {
        assert!(
            stdout.contains(option),
            "{option} missing from run --help:\n{stdout}"
        );
    }
    let (code, stdout, _) = run_to_exit_with_env(bin(), ["cert", "--help"], &env)
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    for option in [
        "--fs-id",
        "--region",
        "--service",
        "--key",
        "--time",
        "--access-point",
        "--common-name",
        "--client-source",
        "--client-version",
        "--out",
        "--explain",
    ] {
        assert!(
            stdout.contains(option),
            "{option} missing from cert --help:\n{stdout}"
        );
    }

    // --fs-id needs --region and --service (a usage error, exit 2).
    let (code, _, stderr) = run_to_exit_with_env(bin(), ["run", "--fs-id", FS], &env)
        .await
        .unwrap();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--region") && stderr.contains("--service"),
        "{stderr}"
    );

    // An S3 Files address needs the AZ, or an explicit --target.
    let (code, _, stderr) = run_to_exit_with_env(
        bin(),
        [
            "run",
            "--fs-id",
            FS,
            "--region",
            REGION,
            "--service",
            "s3files",
        ],
        &env,
    )
    .await
    .unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--az-id"), "{stderr}");

    // A bad file system id is named with an example of a good one.
    let (code, _, stderr) = run_to_exit_with_env(
        bin(),
        [
            "run",
            "--fs-id",
            "fs-NOPE",
            "--region",
            REGION,
            "--service",
            "efs",
        ],
        &env,
    )
    .await
    .unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("fs-NOPE") && stderr.contains("fs-0123456789abcdef0"),
        "{stderr}"
    );

    // --key alone is not enough without --fs-id.
    let (code, _, stderr) = run_to_exit_with_env(
        bin(),
        [
            "run",
            "--target",
            "127.0.0.1:2049",
            "--server-name",
            "x",
            "--key",
            "k.pem",
        ],
        &env,
    )
    .await
    .unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--key needs --cert"), "{stderr}");
}

/// `--no-iam` makes efs-utils' certificate for TLS mounts without `iam`: no credentials
/// needed, and a verifying target refuses it for lack of a signature.
#[tokio::test]
async fn no_iam_certificates_need_no_credentials_and_carry_no_signature() {
    let world = World::new().await;
    let key = world.key();
    let proxy = ProxyProcess::spawn_with_env(
        bin(),
        world.args(&["--key", &key, "--no-iam"]),
        &world.env(&[]),
    )
    .await
    .unwrap();
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
