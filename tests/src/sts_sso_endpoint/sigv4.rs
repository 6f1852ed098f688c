//! SigV4 verification of a request as received: canonical request, string to sign and the
//! HMAC chain from `aws-sigv4`, against the secret of the signing access key id.

use std::collections::BTreeMap;

use efs_proxy::iam::SigningTime;
use ring::digest::{SHA256, digest};

use super::SignedBy;
use crate::http::Request;

/// Verifies a SigV4 `Authorization` header against the request as received, with the
/// secret of its access key id. The error says why (never the secret or the signature).
pub(super) fn verify_sigv4(
    request: &Request,
    known_keys: &BTreeMap<String, String>,
) -> Result<SignedBy, String> {
    let authorization = request
        .header("authorization")
        .ok_or("AssumeRole without an Authorization header")?;
    let fields = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("not an AWS4-HMAC-SHA256 authorization")?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for field in fields.split(',') {
        match field.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => return Err(format!("unexpected authorization field {field:?}")),
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err("authorization lacks Credential, SignedHeaders or Signature".into());
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope[..] else {
        return Err(format!("malformed credential scope {credential:?}"));
    };
    let secret = known_keys
        .get(access_key_id)
        .ok_or_else(|| format!("unknown access key id {access_key_id}"))?;
    let amz_date = request.header("x-amz-date").ok_or("no x-amz-date header")?;
    let signed_at = SigningTime::parse_amz_date(amz_date)?;
    if !amz_date.starts_with(date) {
        return Err("the credential scope's date is not x-amz-date's".into());
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"host") || !names.contains(&"x-amz-date") {
        return Err("host and x-amz-date must be signed".into());
    }
    let mut canonical_headers = String::new();
    for name in &names {
        let values: Vec<String> = request
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(format!("signed header {name} is missing"));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = hex::encode(digest(&SHA256, &request.body));
    if let Some(declared) = request.header("x-amz-content-sha256")
        && declared != payload_hash
    {
        return Err("x-amz-content-sha256 is not the body's hash".into());
    }
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        request.method,
        request.path,
        canonical_query(&request.query),
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex::encode(digest(&SHA256, canonical.as_bytes()))
    );
    let key =
        aws_sigv4::sign::v4::generate_signing_key(secret, signed_at.system_time(), region, service);
    let expected = aws_sigv4::sign::v4::calculate_signature(key, to_sign.as_bytes());
    if expected != signature {
        return Err(format!(
            "SigV4 signature mismatch for {access_key_id} (scope {date}/{region}/{service})"
        ));
    }
    Ok(SignedBy {
        access_key_id: access_key_id.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        session_token: request.header("x-amz-security-token").map(str::to_string),
    })
}

/// SigV4's canonical query string: pairs sorted, already percent-encoded by the signer.
fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}
