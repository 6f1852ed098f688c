//! The bind step: AWSFILE `bind_client_to_partition` as the proxy sends it, its reply
//! (partition, scale-up configuration), and, when the mount target refuses, why
//! ([`bind_refusal`], [`bind_hang_up`]).

use std::time::{Duration, Instant};

use bytes::BytesMut;
use efs_rpc::ReplyError;
use efs_rpc::awsfile::{BindClientResponse, BindResponse, ScaleUpConfig};
use serde_json::{Value, json};

use super::diagnose::{BindFailure, Diagnosis, MissingIam, mismatch};
use super::tls::CheckStream;
use super::{Plan, Report, Seen, Status, Step, StepName};
use crate::error::BindError;
use crate::iam::names;
use crate::upstream::bind::{ProxyIdentity, bind_client_to_partition};

/// Binds the connection; the bytes read past the reply when it passed, `None` stops the run.
pub(super) async fn step(
    plan: &Plan,
    stream: &mut CheckStream,
    seen: &Seen,
    report: &mut Report,
) -> Option<BytesMut> {
    let start = Instant::now();
    let id = ProxyIdentity::default().next_incarnation();
    let result = bind_client_to_partition(
        stream,
        &id,
        efs_rpc::DEFAULT_MAX_RECORD_SIZE,
        plan.bind_timeout,
    )
    .await;
    let elapsed = start.elapsed();
    let step = match result {
        Ok((response, leftover)) => {
            let step = answered(plan, seen, &response, elapsed);
            let ok = step.status == Status::Pass;
            report.push(step);
            return ok.then_some(leftover);
        }
        Err(BindError::Rpc(ReplyError::ProgUnavail)) => {
            report.push(
                Step::pass(
                    StepName::Bind,
                    elapsed,
                    "the server does not know AWSFILE (PROG_UNAVAIL): a plain NFS server behind \
                     TLS, not an EFS/S3 Files mount target; the proxy forwards without bind",
                )
                .with_data(json!({ "reply": "PROG_UNAVAIL" })),
            );
            return Some(BytesMut::new());
        }
        Err(e @ (BindError::Closed | BindError::Io { .. })) => {
            bind_hang_up(plan, seen, e.to_string()).step(StepName::Bind, elapsed)
        }
        Err(BindError::Timeout(limit)) => Step::fail(
            StepName::Bind,
            elapsed,
            format!("no answer to bind_client_to_partition within {limit:?}"),
            "the TLS server does not speak AWSFILE: check that --target is an EFS/S3 Files \
             mount target (or its NLB); raise --bind-timeout on a slow link",
        ),
        Err(e) => Step::fail(
            StepName::Bind,
            elapsed,
            format!("bind_client_to_partition failed: {e}"),
            "check that --target is an EFS/S3 Files mount target (or its NLB)",
        ),
    };
    report.push(step);
    None
}

/// The step of a bind reply: READY or PREFERRED pass, anything else fails.
fn answered(plan: &Plan, seen: &Seen, response: &BindClientResponse, elapsed: Duration) -> Step {
    let scale = &response.scale_up_config;
    match &response.bind_response {
        BindResponse::Ready(p) | BindResponse::Preferred(p) => {
            let kind = if matches!(response.bind_response, BindResponse::Ready(_)) {
                "READY"
            } else {
                "PREFERRED (bound; another partition is preferred)"
            };
            Step::pass(
                StepName::Bind,
                elapsed,
                format!("{kind} on partition {p}; {}", describe_scale_up(scale)),
            )
            .with_data(json!({
                "reply": kind.split(' ').next(),
                "partition": hex::encode(p.0),
                "scale_up": scale_up_json(scale),
            }))
        }
        BindResponse::Retry(msg) | BindResponse::RetryLater(msg) => {
            let (reply, meaning, fix) = match &response.bind_response {
                BindResponse::Retry(_) => (
                    "RETRY",
                    "the server asks for another connection",
                    "run the check again; the proxy reconnects by itself",
                ),
                _ => (
                    "RETRY_LATER",
                    "the mount target is busy",
                    "try again later (the proxy backs off 300 s)",
                ),
            };
            let detail = format!("{reply} ({msg:?}): {meaning}");
            Step::fail(StepName::Bind, elapsed, detail, fix)
                .with_data(json!({ "reply": reply, "message": msg }))
        }
        BindResponse::Error(msg) => bind_refusal(msg, plan, seen)
            .step(StepName::Bind, elapsed)
            .with_data(json!({ "reply": "ERROR", "message": msg })),
        BindResponse::Unknown(d) => Step::fail(
            StepName::Bind,
            elapsed,
            format!("unknown bind reply {d}"),
            "this mount target speaks a newer AWSFILE than this proxy knows",
        )
        .with_data(json!({ "reply": d })),
    }
}

fn describe_scale_up(c: &ScaleUpConfig) -> String {
    format!(
        "scale-up: up to {} connections above {:.0} MiB/s",
        c.max_multiplexed_connections,
        f64::from(c.scale_up_bytes_per_sec_threshold) / (1024.0 * 1024.0)
    )
}

fn scale_up_json(c: &ScaleUpConfig) -> Value {
    json!({
        "max_multiplexed_connections": c.max_multiplexed_connections,
        "scale_up_bytes_per_sec_threshold": c.scale_up_bytes_per_sec_threshold,
        "scale_up_threshold_breached_duration_sec": c.scale_up_threshold_breached_duration_sec,
        "scale_up_lookback_window_size_sec": c.scale_up_lookback_window_size_sec,
    })
}

/// The causes a bind ERROR's words can name; the first row that matches wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    WithoutIam,
    FsId,
    Region,
    Service,
    Validity,
    AccessKey,
}

/// Words of a bind ERROR (lower case), by the cause they name, in the order they are tried:
/// the fake mount target's messages and, by their words, a real mount target's.
const REFUSALS: &[(&[&str], Refusal)] = &[
    (
        &[
            "no iam signature",
            "no sigv4",
            "no client certificate",
            "no file system id",
        ],
        Refusal::WithoutIam,
    ),
    (&["file system id", "filesystem id"], Refusal::FsId),
    (&["signature mismatch", "region"], Refusal::Region),
    (&["service"], Refusal::Service),
    (
        &["expired", "not yet valid", "future", "skew"],
        Refusal::Validity,
    ),
    (&["access key"], Refusal::AccessKey),
];

/// Maps a bind ERROR's message to its cause.
pub(super) fn bind_refusal(message: &str, plan: &Plan, seen: &Seen) -> Diagnosis {
    let lower = message.to_ascii_lowercase();
    let mut refusal = REFUSALS
        .iter()
        .find(|(words, _)| words.iter().any(|w| lower.contains(w)))
        .map(|(_, refusal)| *refusal);
    // Without a signature, anything but a file system complaint is the missing IAM.
    if !seen.has_sigv4() && !lower.contains("file system id") {
        refusal = Some(Refusal::WithoutIam);
    }
    let message = message.to_string();
    let cert_fs = seen
        .client
        .as_ref()
        .and_then(|c| c.fs_id.clone())
        .or_else(|| plan.expected.as_ref().map(|e| e.fs_id.clone()));
    let signed_region = plan
        .expected
        .as_ref()
        .filter(|e| e.signed)
        .map(|e| e.region.clone());
    Diagnosis::Bind(match refusal {
        Some(Refusal::WithoutIam) => BindFailure::WithoutIam {
            missing: if seen.has_sigv4() {
                MissingIam::Nothing
            } else if seen.client.as_ref().is_some_and(|c| c.fs_id.is_none()) {
                MissingIam::SignatureAndFsId
            } else {
                MissingIam::Signature
            },
            message,
        },
        Some(Refusal::FsId) => BindFailure::WrongFsId {
            served: fs_ids_in(&message)
                .into_iter()
                .find(|f| Some(f) != cert_fs.as_ref())
                .or_else(|| seen.served.as_ref().and_then(|s| s.fs_id.clone())),
            signed: cert_fs.unwrap_or_else(|| "?".into()),
            region: signed_region,
            message,
        },
        Some(Refusal::Region) => {
            let region = signed_region.unwrap_or_else(|| "?".into());
            BindFailure::WrongRegion {
                served: seen
                    .served
                    .as_ref()
                    .filter(|s| s.region != region)
                    .map(|s| (s.region.clone(), seen.served_names())),
                region,
                fs_id: cert_fs.unwrap_or_else(|| "?".into()),
                message,
            }
        }
        Some(Refusal::Service) => BindFailure::WrongService { message },
        Some(Refusal::Validity) => BindFailure::OutsideValidity { message },
        Some(Refusal::AccessKey) => BindFailure::AccessKey { message },
        None => BindFailure::Refused { message },
    })
}

/// The fs ids a message mentions.
fn fs_ids_in(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| names::check_fs_id(w).is_ok())
        .map(str::to_string)
        .collect()
}

/// The server hung up (or sent an alert) instead of answering bind: in TLS 1.3 a refused
/// client certificate shows here.
pub(super) fn bind_hang_up(plan: &Plan, seen: &Seen, error: String) -> Diagnosis {
    Diagnosis::Bind(if !seen.has_sigv4() {
        BindFailure::HangUpWithoutIam { error }
    } else if let (Some(served), Some(expected)) = (&seen.served, plan.expected_target())
        && mismatch(served, &expected).is_some()
    {
        BindFailure::HangUpWrongTarget {
            expected,
            served: served.clone(),
            error,
        }
    } else {
        BindFailure::HangUp { error }
    })
}

#[cfg(test)]
mod tests {
    use super::super::Problem;
    use super::super::test_support::{plan, seen};
    use super::*;

    const FS: &str = "fs-0123456789abcdef0";
    const SERVED: &str = "fs-0123456789abcdef0.s3files.us-east-1.on.aws";

    #[test]
    fn bind_errors_are_told_apart_by_their_words() {
        let plan = plan(Some((FS, "us-east-1", true)));
        let signed = seen(true, Some(FS), Some(SERVED));
        let cases = [
            (
                "wrong file system id: the certificate is for fs-0fedcba987654321, this mount \
                 target serves fs-0123456789abcdef0",
                Some(Problem::WrongRegionOrFsId),
                "but the mount target serves fs-0fedcba987654321",
            ),
            (
                "signature mismatch",
                Some(Problem::WrongRegionOrFsId),
                "check --region",
            ),
            (
                "no IAM signature",
                Some(Problem::TlsWithoutIam),
                "turn IAM on",
            ),
            ("wrong service", None, "check --service"),
            ("certificate expired", None, "clock"),
            ("access key unknown", None, "active IAM identity"),
            ("quota exceeded", None, "file system policy"),
        ];
        for (message, problem, needle) in cases {
            let step = bind_refusal(message, &plan, &signed).step(StepName::Bind, Duration::ZERO);
            assert_eq!(step.problem, problem, "{message}");
            let line = step.line();
            assert!(line.contains(needle), "{message}: {line}");
            assert!(line.contains(&format!("{message:?}")), "{line}");
        }
    }

    #[test]
    fn without_a_signature_only_a_file_system_complaint_is_not_about_iam() {
        let plan = plan(None);
        let step = bind_refusal("signature mismatch", &plan, &seen(false, None, None))
            .step(StepName::Bind, Duration::ZERO);
        assert_eq!(step.problem, Some(Problem::TlsWithoutIam));
        assert!(
            step.detail
                .contains("neither a SigV4 signature nor a file system id")
        );
        let step = bind_refusal("wrong file system id", &plan, &seen(false, Some(FS), None))
            .step(StepName::Bind, Duration::ZERO);
        assert_eq!(step.problem, Some(Problem::WrongRegionOrFsId));
    }

    #[test]
    fn a_hang_up_names_the_missing_signature_or_the_other_mount_target() {
        let plan = plan(Some((FS, "eu-west-1", true)));
        let hang_up = |seen: &Seen| {
            bind_hang_up(&plan, seen, "closed".into()).step(StepName::Bind, Duration::ZERO)
        };
        assert_eq!(
            hang_up(&seen(false, Some(FS), None)).problem,
            Some(Problem::TlsWithoutIam)
        );
        let other_region = hang_up(&seen(true, Some(FS), Some(SERVED)));
        assert_eq!(other_region.problem, Some(Problem::WrongRegionOrFsId));
        assert!(
            other_region.detail.contains("(s3files, eu-west-1)"),
            "{}",
            other_region.detail
        );
        let unknown = hang_up(&seen(true, Some(FS), None));
        assert_eq!(unknown.problem, None);
        assert!(unknown.fix.unwrap().contains("file system policy"));
    }

    #[test]
    fn fs_ids_are_found_in_messages() {
        assert_eq!(
            fs_ids_in(
                "wrong file system id: the certificate is for fs-0fedcba987654321, this mount target serves fs-0123456789abcdef0"
            ),
            vec!["fs-0fedcba987654321", "fs-0123456789abcdef0"]
        );
    }
}
