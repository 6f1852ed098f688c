//! `efs-proxy check` against the fake mount target (and two raw peers): an all-✓ run with an
//! IAM certificate the fake target verifies and an NFS NULL call, the `--json` report, and
//! every failure users meet most, each with its own message, its ✗ step and exit status 1:
//! plain NFS without TLS, no TLS, TLS without IAM, an unreachable target (DNS, TCP refused,
//! TCP timeout), a certificate for the wrong region or file system.
//!
//! Every check runs with a cleared environment, fake credentials and
//! `AWS_EC2_METADATA_DISABLED=true`; every peer is on 127.0.0.1, and the DNS failure uses a
//! name the resolver refuses locally (a label over 63 characters), so nothing leaves
//! 127.0.0.0/8.

use std::path::Path;
use std::time::Duration;

use efs_proxy_tests::bed::{AKID, FS_ID as FS, REGION, SECRET, iam_verifier};
use efs_proxy_tests::process::run_to_exit_with_env;
use efs_proxy_tests::{BindBehaviour, ProxyArgs, Responder, SERVER_NAME, TestBed};
use efs_rpc::{AuthStat, ReplyHeader, RpcMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const OTHER_FS: &str = "fs-0fedcba987654321";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQDcheck+token/x=";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_efs-proxy"))
}

/// A fake S3 Files mount target for `FS`: TLS, READY, echo backend, and the IAM check.
async fn iam_bed() -> TestBed {
    TestBed::builder()
        .bind(BindBehaviour::ready(0x5a))
        .iam(iam_verifier("s3files"))
        .start()
        .await
}

/// The same mount target without TLS and IAM, answering NFS with `responder`.
async fn plaintext_bed(responder: Responder) -> TestBed {
    TestBed::builder()
        .bind(BindBehaviour::ready(0x5a))
        .plaintext()
        .responder(responder)
        .start()
        .await
}

/// `check` with IAM for `FS` on S3 Files, to this target, with the vectors' RSA-3072 key
/// (generating one per check would be slow unoptimized), plus `extra`.
fn iam_args(bed: &TestBed, extra: &[&str]) -> ProxyArgs {
    with_timeouts(bed.check_with_iam().with("--key", bed.rsa_key())).and(extra)
}

/// `check` with the test PKI's plain client certificate (no IAM), to `target`.
fn cert_args(bed: &TestBed, target: &str) -> ProxyArgs {
    with_timeouts(bed.check_with_cert().with("--target", target))
}

fn with_timeouts(args: ProxyArgs) -> ProxyArgs {
    args.with("--connect-timeout", "2")
        .with("--bind-timeout", "2")
}

/// The bed's environment, with the test credentials (with a session token) when asked.
fn env(bed: &TestBed, credentials: bool) -> Vec<(&str, &str)> {
    let given = [
        ("AWS_ACCESS_KEY_ID", AKID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_SESSION_TOKEN", TOKEN),
    ];
    bed.env(if credentials { &given } else { &[] })
}

/// `args` with `key`'s value replaced, or `key value` appended.
fn with(args: ProxyArgs, key: &str, value: &str) -> ProxyArgs {
    args.with(key, value)
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// The line of `step` (the first one when there are several, as for tcp).
    fn line(&self, step: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(step))
            .unwrap_or_else(|| panic!("no {step} line in:\n{}", self.stdout))
    }

    /// Asserts that `step` failed with every one of `needles`, the steps after it are skipped
    /// naming it, and the exit status is 1.
    fn assert_failed(&self, step: &str, needles: &[&str]) {
        assert_eq!(self.code, Some(1), "exit status; output:\n{}", self.all());
        let line = self.line(step);
        assert!(line.starts_with("✗ "), "{step} must fail:\n{}", self.all());
        for needle in needles {
            assert!(
                line.contains(needle),
                "the {step} line lacks {needle:?}:\n{line}\n\nfull output:\n{}",
                self.all()
            );
        }
        assert!(line.contains(". Fix: "), "no fix on the line: {line}");
        let steps = [
            "config",
            "credentials",
            "dns",
            "tcp",
            "tls",
            "client-cert",
            "bind",
            "nfs-null",
        ];
        let at = steps.iter().position(|s| *s == step).unwrap();
        for later in &steps[at + 1..] {
            let line = self.line(later);
            assert!(
                line.starts_with("— ") && line.contains(&format!("skipped: {step} failed")),
                "{later} must be skipped after {step}: {line}"
            );
        }
        assert!(self.stdout.contains("check failed: "), "{}", self.stdout);
        self.assert_no_secrets();
    }

    fn assert_no_secrets(&self) {
        for secret in [SECRET, TOKEN] {
            assert!(
                !self.all().contains(secret),
                "a secret leaked:\n{}",
                self.all()
            );
        }
    }

    fn all(&self) -> String {
        format!("{}\n--- stderr ---\n{}", self.stdout, self.stderr)
    }
}

async fn check(args: &[String], env: &[(&str, &str)]) -> Outcome {
    let (code, stdout, stderr) = run_to_exit_with_env(bin(), args, env).await.unwrap();
    // The report, for `cargo test -- --nocapture`.
    eprintln!("$ efs-proxy {}\n{stdout}", args.join(" "));
    Outcome {
        code,
        stdout,
        stderr,
    }
}

// --- all ✓ ---

#[tokio::test]
async fn every_step_passes_with_an_iam_certificate_and_an_nfs_null_call() {
    let world = iam_bed().await;
    let out = check(&iam_args(&world, &["--nfs-null"]), &env(&world, true)).await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    for step in [
        "config",
        "credentials",
        "dns",
        "tcp",
        "tls",
        "client-cert",
        "bind",
        "nfs-null",
    ] {
        assert!(out.line(step).starts_with("✓ "), "{}", out.all());
    }
    assert!(
        out.line("credentials")
            .contains("environment: access key AKIDEXAMPLE")
    );
    assert!(
        out.line("credentials")
            .contains("with session token (not shown)")
    );
    assert!(
        out.line("credentials")
            .contains("no expiry (long-term keys)")
    );
    assert!(
        out.line("tls")
            .contains(&format!("name {SERVER_NAME} verified"))
    );
    let cert = out.line("client-cert");
    assert!(cert.contains(&format!("file system {FS}")), "{cert}");
    assert!(
        cert.contains("SigV4 by access key AKIDEXAMPLE, signed at "),
        "{cert}"
    );
    assert!(cert.contains("for s3files in us-east-1"), "{cert}");
    let bind = out.line("bind");
    assert!(
        bind.contains("READY on partition 5a5a5a5a5a5a5a5a"),
        "{bind}"
    );
    assert!(
        bind.contains("scale-up: up to 5 connections above 300 MiB/s"),
        "{bind}"
    );
    assert!(out.line("nfs-null").contains("NFS v4 NULL answered"));
    assert!(
        out.stdout
            .contains("all checks passed (8 passed, 0 skipped)")
    );
    out.assert_no_secrets();
    let seen = world.target.observations();
    assert_eq!(
        seen.iam_accepted, 1,
        "the fake target verified the certificate"
    );
    assert_eq!(seen.records, 1, "one NFS NULL call after the bind");
}

#[tokio::test]
async fn json_report_parses_and_carries_each_steps_facts() {
    let world = iam_bed().await;
    let out = check(
        &iam_args(&world, &["--nfs-null", "--json"]),
        &env(&world, true),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(report["ok"], true);
    assert_eq!(report["problem"], serde_json::Value::Null);
    assert_eq!(
        report["server_name"],
        format!("{FS}.s3files.{REGION}.on.aws")
    );
    let steps = report["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "config",
            "credentials",
            "dns",
            "tcp",
            "tls",
            "client-cert",
            "bind",
            "nfs-null"
        ]
    );
    for step in steps {
        assert_eq!(step["status"], "pass", "{step}");
        assert!(step["ms"].as_f64().is_some(), "{step}");
    }
    let by = |name: &str| steps.iter().find(|s| s["step"] == name).unwrap();
    assert_eq!(by("credentials")["data"]["source"], "environment");
    assert_eq!(by("credentials")["data"]["access_key_id"], AKID);
    assert_eq!(by("credentials")["data"]["session_token"], true);
    assert_eq!(
        by("dns")["data"]["addresses"][0],
        world.target.addr().to_string()
    );
    assert!(
        by("tls")["data"]["protocol"]
            .as_str()
            .unwrap()
            .starts_with("TLSv1_")
    );
    assert_eq!(by("client-cert")["data"]["fs_id"], FS);
    assert_eq!(by("client-cert")["data"]["sigv4"]["access_key_id"], AKID);
    assert_eq!(by("bind")["data"]["reply"], "READY");
    assert_eq!(by("bind")["data"]["partition"], "5a".repeat(64));
    assert_eq!(
        by("bind")["data"]["scale_up"]["max_multiplexed_connections"],
        5
    );
    out.assert_no_secrets();

    // A failure in JSON: the problem's id, exit status 1, the rest skipped.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = check(
        &with(iam_args(&world, &["--json"]), "--target", &addr),
        &env(&world, true),
    )
    .await;
    assert_eq!(out.code, Some(1));
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["problem"], "unreachable");
    let tcp = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "tcp")
        .unwrap();
    assert_eq!(tcp["status"], "fail");
    assert!(tcp["fix"].as_str().unwrap().contains("port"));
    assert_eq!(report["steps"][4]["status"], "skip");
}

// --- 1. plain NFS without the proxy ---

#[tokio::test]
async fn plain_nfs_server_is_named_with_the_access_denied_explanation() {
    let world = plaintext_bed(Responder::Echo).await;
    let out = check(
        &cert_args(&world, &world.target.addr().to_string()),
        &env(&world, false),
    )
    .await;
    out.assert_failed(
        "tls",
        &[
            "plain NFS without TLS: ",
            "closed the connection at the TLS ClientHello",
            "answered a plaintext NFS NULL call",
            "not an EFS/S3 Files mount target",
            "mount -t nfs4",
            "\"access denied\"",
            "efs-proxy run",
        ],
    );
    assert!(out.stdout.contains("check failed: plain NFS without TLS"));
}

/// A server that takes NFS without TLS only to refuse it (MSG_DENIED, AUTH_ERROR): what a
/// direct `mount -t nfs4` meets as "access denied".
async fn access_denying_nfs_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut mark = [0u8; 4];
                stream.read_exact(&mut mark).await.ok()?;
                if mark[0] == 0x16 {
                    return None; // a TLS ClientHello: hang up
                }
                let mut message = vec![0; (u32::from_be_bytes(mark) & 0x7fff_ffff) as usize];
                stream.read_exact(&mut message).await.ok()?;
                let (call, _) = RpcMessage::decode(&message).ok()?;
                let reply = RpcMessage::reply(call.xid, ReplyHeader::AuthError(AuthStat::TOOWEAK))
                    .encode()
                    .ok()?;
                let record = efs_rpc::Record::from_message(&reply).ok()?;
                stream.write_all(record.wire()).await.ok()
            });
        }
    });
    addr
}

#[tokio::test]
async fn plain_nfs_refusal_is_reported_as_access_denied() {
    let world = iam_bed().await;
    let addr = access_denying_nfs_server().await.to_string();
    let out = check(&cert_args(&world, &addr), &env(&world, false)).await;
    out.assert_failed(
        "tls",
        &[
            "plain NFS without TLS: ",
            "refused a plaintext NFS NULL call (authentication error",
            "\"access denied\" is what NFS without TLS and IAM gets",
            "mount -t nfs4",
        ],
    );
}

// --- 2. no TLS ---

#[tokio::test]
async fn a_peer_that_is_not_tls_is_named_with_what_it_sent() {
    let world = iam_bed().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 512];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
            let _ = stream.shutdown().await;
        }
    });
    let out = check(&cert_args(&world, &addr), &env(&world, false)).await;
    out.assert_failed(
        "tls",
        &[
            "no TLS: ",
            "is not a TLS endpoint: it answered the TLS ClientHello with \"HTTP/1.1 400 Bad Request\\r\\n",
            "not a TLS record",
            "the NLB's TCP listener on 2049",
        ],
    );
    assert!(!out.line("tls").contains("plain NFS"));
    assert!(out.stdout.contains("check failed: no TLS"));
}

#[tokio::test]
async fn a_plaintext_target_that_answers_nothing_is_no_tls() {
    // The fake target without TLS, whose backend never answers: neither TLS nor NFS.
    let world = plaintext_bed(Responder::Silent).await;
    let out = check(
        &cert_args(&world, &world.target.addr().to_string()),
        &env(&world, false),
    )
    .await;
    out.assert_failed(
        "tls",
        &[
            "no TLS: ",
            "closed the connection at the TLS ClientHello",
            "does not answer a plaintext NFS call either",
        ],
    );
}

// --- 3. TLS without IAM ---

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
    let out = check(
        &cert_args(&world, &world.target.addr().to_string()),
        &env(&world, false),
    )
    .await;
    out.assert_failed(
        "bind",
        &[
            "TLS without IAM: ",
            "neither a SigV4 signature nor a file system id",
            "--fs-id ID --region REGION --service",
        ],
    );
}

// --- 4. unreachable NLB ---

#[tokio::test]
async fn an_unresolvable_name_is_unreachable_at_dns() {
    let world = iam_bed().await;
    // A label over 63 characters: the resolver refuses it without sending a query.
    let name = format!("{}.invalid:2049", "n".repeat(70));
    let out = check(
        &with(iam_args(&world, &[]), "--target", &name),
        &env(&world, true),
    )
    .await;
    out.assert_failed(
        "dns",
        &[
            "unreachable: cannot resolve nnnn",
            "NlbDns",
            "resolves only inside its VPC",
        ],
    );
}

#[tokio::test]
async fn a_refused_connection_is_unreachable_at_tcp() {
    let world = iam_bed().await;
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let out = check(
        &with(iam_args(&world, &[]), "--target", &addr.to_string()),
        &env(&world, true),
    )
    .await;
    out.assert_failed(
        "tcp",
        &[
            &format!("unreachable: {addr} refused the connection: nothing listens on port"),
            "check --target's host and port",
        ],
    );
    assert!(out.line("dns").starts_with("✓ "));
}

#[tokio::test]
async fn a_silent_address_is_unreachable_with_the_security_group_fix() {
    let world = iam_bed().await;
    // A listener with a full accept queue drops further SYNs, as a security group does.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    for _ in 0..4 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => queued.push(s),
            Err(_) => break,
        }
    }
    let args = with(
        with(iam_args(&world, &[]), "--target", &addr.to_string()),
        "--connect-timeout",
        "1",
    );
    let out = check(&args, &env(&world, true)).await;
    out.assert_failed(
        "tcp",
        &[
            &format!("unreachable: {addr} did not answer within 1s"),
            "security group must allow TCP 2049",
            "allowedCidr",
        ],
    );
    drop(queued);
}

// --- 5. wrong region or file system id ---

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

// --- configuration and credentials ---

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
