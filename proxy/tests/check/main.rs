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

mod config;
mod no_iam;
mod no_tls;
mod passing;
mod plain_nfs;
mod unreachable;
mod wrong_target;

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
        let at = STEPS.iter().position(|s| *s == step).unwrap();
        for later in &STEPS[at + 1..] {
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

/// `check` of the bed's own target with the plain client certificate and no credentials.
async fn check_with_plain_cert(bed: &TestBed) -> Outcome {
    let target = bed.target.addr().to_string();
    check(&cert_args(bed, &target), &env(bed, false)).await
}

/// The steps of a report, in order.
const STEPS: [&str; 8] = [
    "config",
    "credentials",
    "dns",
    "tcp",
    "tls",
    "client-cert",
    "bind",
    "nfs-null",
];

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
