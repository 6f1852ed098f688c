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

mod cert_command;
mod certificate;
mod refresh;
mod sources;
mod sts;
mod verifier;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_efs-proxy"))
}

/// A reference certificate of the vectors, DER.
fn vector_cert(name: &str) -> Vec<u8> {
    let pem = std::fs::read(vectors().join(format!("{name}.cert.pem"))).unwrap();
    CertificateDer::from_pem_slice(&pem).unwrap().to_vec()
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
