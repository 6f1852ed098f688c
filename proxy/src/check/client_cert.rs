//! The client certificate step: what the certificate carries (subject, validity, efs-utils'
//! extensions, decoded by [`certificate::decode`]) and whether a mount target would take it
//! now.

use std::time::{Instant, SystemTime};

use serde_json::{Value, json};

use super::diagnose::IAM_FIX;
use super::{MAX_SIGNATURE_AGE, Plan, Problem, Report, Seen, Status, Step, StepName, human};
use crate::iam::ClientInfo;
use crate::iam::certificate::{self, Decoded};

/// Decodes and checks the client certificate; false stops the run.
pub(super) fn step(plan: &Plan, seen: &mut Seen, report: &mut Report) -> bool {
    let start = Instant::now();
    let Some(identity) = &plan.identity else {
        report.push(Step::problem(
            StepName::ClientCert,
            start.elapsed(),
            Problem::TlsWithoutIam,
            "no client certificate: EFS and S3 Files mount targets authenticate clients by an \
             IAM-signed certificate",
            IAM_FIX,
        ));
        return false;
    };
    let decoded = match identity.chain.first() {
        None => Err("the client certificate file holds no certificate".to_string()),
        Some(cert) => certificate::decode(cert)
            .map_err(|e| format!("cannot decode the client certificate: {e}")),
    };
    let info = match decoded {
        Ok(info) => info,
        Err(detail) => {
            report.push(Step::fail(
                StepName::ClientCert,
                start.elapsed(),
                detail,
                "check --cert",
            ));
            return false;
        }
    };
    let now = SystemTime::now();
    let detail = describe(plan, &info, now);
    let step = match refusal(plan, &info, now, &detail) {
        Some((Some(problem), detail, fix)) => {
            Step::problem(StepName::ClientCert, start.elapsed(), problem, detail, fix)
        }
        Some((None, detail, fix)) => Step::fail(StepName::ClientCert, start.elapsed(), detail, fix),
        None => Step::pass(StepName::ClientCert, start.elapsed(), detail),
    };
    let data = to_json(&info);
    seen.client = Some(info);
    let ok = step.status == Status::Pass;
    report.push(step.with_data(data));
    ok
}

/// Subject, validity and every extension, in words.
fn describe(plan: &Plan, info: &Decoded, now: SystemTime) -> String {
    let mut parts = vec![info.subject.clone()];
    if let (Some(nb), Some(na)) = (info.not_before, info.not_after) {
        parts.push(format!("valid {nb} to {na}"));
    }
    let mut extensions = Vec::new();
    if let Some(fs) = &info.fs_id {
        extensions.push(format!("file system {fs}"));
    }
    if let Some(ap) = &info.access_point {
        extensions.push(format!("access point {ap}"));
    }
    match &info.sigv4 {
        Some(s) => {
            let mut text = format!("SigV4 by access key {}", s.access_key_id);
            if let Some(at) = s.signed_at {
                let age = now.duration_since(at.system_time()).unwrap_or_default();
                text.push_str(&format!(", signed at {at} ({} ago)", human(age)));
            }
            if let Some(e) = plan.expected.as_ref().filter(|e| e.signed) {
                text.push_str(&format!(" for {} in {}", e.service, e.region));
            }
            if s.session_token {
                text.push_str(", session token present (not shown)");
            }
            extensions.push(text);
        }
        None => extensions.push(
            "no SigV4 signature (TLS without IAM: only file systems whose policy does not require \
             IAM accept it)"
                .to_string(),
        ),
    }
    if let Some(ClientInfo { source, version }) = &info.client_info {
        extensions.push(format!("client {source} {version}"));
    }
    parts.push(extensions.join("; "));
    parts.join(", ")
}

/// Why a mount target would refuse the certificate now: outside its validity, made for
/// another file system, or signed too long ago. The problem (if of a known kind), the detail
/// and the fix.
fn refusal(
    plan: &Plan,
    info: &Decoded,
    now: SystemTime,
    detail: &str,
) -> Option<(Option<Problem>, String, String)> {
    if info.not_before.is_some_and(|t| now < t.system_time())
        || info.not_after.is_some_and(|t| now > t.system_time())
    {
        return Some((
            None,
            format!("the certificate is not valid now ({detail})"),
            "make a new certificate (without --cert the proxy makes and refreshes it), and check \
             this host's clock"
                .to_string(),
        ));
    }
    if let (Some(e), Some(fs)) = (&plan.expected, &info.fs_id)
        && *fs != e.fs_id
    {
        return Some((
            Some(Problem::WrongRegionOrFsId),
            format!(
                "the certificate was made for file system {fs}, but --fs-id is {}",
                e.fs_id
            ),
            "use a certificate for this file system (or drop --cert: the proxy makes one)".into(),
        ));
    }
    let signed_at = info.sigv4.as_ref().and_then(|s| s.signed_at)?;
    let age = now.duration_since(signed_at.system_time()).ok()?;
    (age > MAX_SIGNATURE_AGE).then(|| {
        (
            None,
            format!(
                "the SigV4 signature is from {signed_at}, more than 24 h ago: mount targets \
                 refuse it"
            ),
            "make a new certificate (without --cert the proxy signs and refreshes it)".into(),
        )
    })
}

fn to_json(info: &Decoded) -> Value {
    json!({
        "subject": info.subject,
        "not_before": info.not_before.map(|t| t.to_string()),
        "not_after": info.not_after.map(|t| t.to_string()),
        "fs_id": info.fs_id,
        "access_point": info.access_point,
        "sigv4": info.sigv4.as_ref().map(|s| json!({
            "access_key_id": s.access_key_id,
            "signed_at": s.signed_at.map(|t| t.to_string()),
            "session_token": s.session_token,
        })),
        "client_info": info.client_info.as_ref().map(|c| json!({"source": c.source, "version": c.version})),
    })
}
