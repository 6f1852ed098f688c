//! The client certificate step: what the certificate carries (subject, validity, efs-utils'
//! extensions) and whether a mount target would take it now.

use std::time::{Instant, SystemTime};

use serde_json::{Value, json};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::diagnose::IAM_FIX;
use super::{MAX_SIGNATURE_AGE, Plan, Problem, Report, Seen, Status, Step, StepName, human};
use crate::iam::SigningTime;
use crate::iam::der::{self, tag};

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
        Some(cert) => decode_client_certificate(cert)
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
fn describe(plan: &Plan, info: &ClientCertInfo, now: SystemTime) -> String {
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
    if let Some((source, version)) = &info.client_info {
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
    info: &ClientCertInfo,
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

fn to_json(info: &ClientCertInfo) -> Value {
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
        "client_info": info.client_info.as_ref().map(|(s, v)| json!({"source": s, "version": v})),
    })
}

/// What the client certificate says.
#[derive(Debug, Clone, Default)]
pub struct ClientCertInfo {
    pub subject: String,
    pub not_before: Option<SigningTime>,
    pub not_after: Option<SigningTime>,
    /// Extension 1.3.6.1.4.1.4843.7.3.
    pub fs_id: Option<String>,
    /// Extension 1.3.6.1.4.1.4843.7.1.
    pub access_point: Option<String>,
    /// Extension 1.3.6.1.4.1.4843.7.2.
    pub sigv4: Option<SigV4Info>,
    /// Extension 1.3.6.1.4.1.4843.7.4: source and version.
    pub client_info: Option<(String, String)>,
}

/// The SigV4 extension, without the signature and the session token.
#[derive(Debug, Clone)]
pub struct SigV4Info {
    pub access_key_id: String,
    pub signed_at: Option<SigningTime>,
    pub session_token: bool,
}

const OID_ACCESS_POINT: &str = "1.3.6.1.4.1.4843.7.1";
const OID_SIGV4: &str = "1.3.6.1.4.1.4843.7.2";
const OID_FS_ID: &str = "1.3.6.1.4.1.4843.7.3";
const OID_CLIENT_INFO: &str = "1.3.6.1.4.1.4843.7.4";

/// Decodes a client certificate's subject, validity and efs-utils extensions.
pub fn decode_client_certificate(cert_der: &[u8]) -> Result<ClientCertInfo, String> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let extension = |oid: &str| {
        cert.extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == oid)
            .map(|e| e.value)
    };
    let utf8 = |value: &[u8]| match der::read_tlv(value) {
        Some((tag::UTF8_STRING, content, [])) => {
            Some(String::from_utf8_lossy(content).into_owned())
        }
        _ => None,
    };
    let validity = cert.validity();
    Ok(ClientCertInfo {
        subject: cert.subject().to_string(),
        not_before: SigningTime::from_unix(validity.not_before.timestamp()),
        not_after: SigningTime::from_unix(validity.not_after.timestamp()),
        fs_id: extension(OID_FS_ID).and_then(utf8),
        access_point: extension(OID_ACCESS_POINT).and_then(utf8),
        sigv4: extension(OID_SIGV4).map(decode_sigv4),
        client_info: extension(OID_CLIENT_INFO).and_then(decode_client_info),
    })
}

/// Extension 7.2, as far as it is well formed: the fields after a malformed one are absent.
fn decode_sigv4(value: &[u8]) -> SigV4Info {
    let body = match der::read_tlv(value) {
        Some((tag::SEQUENCE, body, _)) => body,
        _ => &[][..],
    };
    let (access_key_id, rest) = match der::read_tlv(body) {
        Some((tag::UTF8_STRING, akid, rest)) => (String::from_utf8_lossy(akid).into_owned(), rest),
        _ => (String::new(), &[][..]),
    };
    let rest = match der::read_tlv(rest) {
        Some((tag::OCTET_STRING, _signature, rest)) => rest,
        _ => &[][..],
    };
    let (signed_at, rest) = match der::read_tlv(rest) {
        Some((tag::UTC_TIME, time, rest)) => (parse_utc_time(time), rest),
        _ => (None, &[][..]),
    };
    SigV4Info {
        access_key_id,
        signed_at,
        session_token: matches!(der::read_tlv(rest), Some((tag::CONTEXT_0, _, _))),
    }
}

/// Extension 7.4: source and version.
fn decode_client_info(value: &[u8]) -> Option<(String, String)> {
    let (tag::SEQUENCE, body, _) = der::read_tlv(value)? else {
        return None;
    };
    let (tag::UTF8_STRING, source, rest) = der::read_tlv(body)? else {
        return None;
    };
    let (tag::UTF8_STRING, version, _) = der::read_tlv(rest)? else {
        return None;
    };
    Some((
        String::from_utf8_lossy(source).into_owned(),
        String::from_utf8_lossy(version).into_owned(),
    ))
}

/// UTCTime `YYMMDDHHMMSSZ` (years 50–99 are 19xx).
fn parse_utc_time(bytes: &[u8]) -> Option<SigningTime> {
    // Checked as bytes first: slicing a `str` at 12 would panic inside a multi-byte character.
    let [digits @ .., b'Z'] = bytes else {
        return None;
    };
    if digits.len() != 12 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let century = if bytes[0] >= b'5' { "19" } else { "20" };
    SigningTime::parse_amz_date(&format!("{century}{}T{}", &text[..6], &text[6..])).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_are_parsed_without_panicking_on_any_bytes() {
        assert!(parse_utc_time(b"491231235959Z").is_some());
        assert!(parse_utc_time(b"991231235959Z").is_some());
        // A multi-byte character across byte 12 used to panic (`str` slicing).
        for bad in [
            "12345678901é".as_bytes(),
            &b"1234567890\xc3\xa9Z"[..],
            b"1234567890123",
            b"12345678901Z",
            b"",
            b"Z",
        ] {
            assert!(parse_utc_time(bad).is_none(), "{bad:?}");
        }
    }
}
