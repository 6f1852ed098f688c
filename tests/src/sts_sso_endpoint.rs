//! A fake AWS STS and AWS IAM Identity Center (SSO) portal on loopback, for the credential
//! sources of aws-config's chain that trade one credential for another: web identity
//! (`AssumeRoleWithWebIdentity`), a profile's `role_arn` + `source_profile` (`AssumeRole`)
//! and a profile's `sso_session` / `sso_start_url` (`GetRoleCredentials`).
//!
//! It speaks the real wire formats, so the SDK's own STS and SSO clients parse its answers:
//!
//! - STS, query protocol: `POST /` with a form-encoded body (`Action=AssumeRole&Version=
//!   2011-06-15&RoleArn=…`), answered with the `<AssumeRoleResponse>` /
//!   `<AssumeRoleWithWebIdentityResponse>` XML document whose `Credentials` hold
//!   `AccessKeyId`, `SecretAccessKey`, `SessionToken` and an ISO 8601 `Expiration`;
//! - SSO portal, REST-JSON: `GET /federation/credentials?role_name=…&account_id=…` with the
//!   access token in `x-amz-sso_bearer_token`, answered with `{"roleCredentials": {…}}` whose
//!   `expiration` is in epoch milliseconds.
//!
//! Every request is recorded as a [`Call`], so a test asserts what the proxy sent (the web
//! identity token, the role ARN, the bearer token) and not only that something came back.
//! `AssumeRole` is only answered if its SigV4 signature verifies with one of the
//! [`known_keys`](StsSsoEndpoint::start): the signature is recomputed here from the request
//! as received (canonical request, string to sign, HMAC chain from `aws-sigv4`), as real STS
//! does, so "assumed the role with the source profile's keys" is checked, not assumed.
//!
//! Anything else (unknown paths or actions, missing parameters, bad encodings, a body larger
//! than 64 KiB, a wrong signature) gets an HTTP 4xx with an error document and is recorded as
//! [`Call::Refused`]; nothing here panics on bad input.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use efs_proxy::iam::SigningTime;
use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, SHA256, digest};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::http::{self, Request, read_request};

/// A role's account, in the ARNs of the answers.
const ACCOUNT: &str = "123456789012";

/// The temporary credentials every successful call hands out.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// Their lifetime from the moment of the answer.
    pub expires_in: Duration,
}

/// Who signed a request, from a SigV4 `Authorization` header that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBy {
    pub access_key_id: String,
    /// The credential scope's region and service (`sts`).
    pub region: String,
    pub service: String,
    /// `x-amz-security-token`, when the signing credentials had one.
    pub session_token: Option<String>,
}

/// One request, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// STS `AssumeRoleWithWebIdentity`. `authorization` is the `Authorization` header, if
    /// any: the real API is unsigned, and the SDK sends none.
    AssumeRoleWithWebIdentity {
        role_arn: String,
        role_session_name: String,
        web_identity_token: String,
        authorization: Option<String>,
    },
    /// STS `AssumeRole`, signed by `signed_by` (verified before it is answered).
    AssumeRole {
        role_arn: String,
        role_session_name: String,
        signed_by: SignedBy,
    },
    /// SSO portal `GetRoleCredentials`.
    GetRoleCredentials {
        role_name: String,
        account_id: String,
        bearer_token: String,
    },
    /// Answered with an error status: the request line and why.
    Refused {
        request: String,
        status: u16,
        reason: String,
    },
}

/// A running endpoint; stops when dropped.
pub struct StsSsoEndpoint {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    shutdown: CancellationToken,
}

impl Drop for StsSsoEndpoint {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What the server needs per request.
struct Shared {
    issued: Issued,
    /// Access key id → secret access key, the identities `AssumeRole` may be signed by.
    known_keys: BTreeMap<String, String>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl StsSsoEndpoint {
    /// Answers every successful call with `issued`; `known_keys` are the (access key id,
    /// secret access key) pairs whose SigV4 signatures `AssumeRole` accepts.
    pub async fn start(issued: Issued, known_keys: &[(&str, &str)]) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let calls = Arc::new(Mutex::new(Vec::new()));
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared {
            issued,
            known_keys: known_keys
                .iter()
                .map(|(k, s)| (k.to_string(), s.to_string()))
                .collect(),
            calls: calls.clone(),
        });
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => match r { Ok(p) => p, Err(_) => continue },
                };
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Ok(StsSsoEndpoint {
            addr,
            calls,
            shutdown,
        })
    }

    /// The base URL, for `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL_SSO` or a profile's
    /// `endpoint_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The calls received so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// The name of a cached SSO token file: `~/.aws/sso/cache/<hex SHA-1 of identifier>.json`,
/// where the identifier is the `sso_session` name, or `sso_start_url` for a legacy profile
/// without one (as aws-config's `sso::cache::cached_token_path` and the AWS CLI).
pub fn sso_cache_file_name(identifier: &str) -> String {
    format!(
        "{}.json",
        hex::encode(digest(&SHA1_FOR_LEGACY_USE_ONLY, identifier.as_bytes()))
    )
}

/// An answer: status, content type, body.
type Answer = (u16, &'static str, String);

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let (request, answer) = match read_request(&mut stream).await {
        Ok(Some(request)) => {
            let answer = route(&request, &shared);
            (request.line(), answer)
        }
        Ok(None) => return,
        Err(reason) => ("(unreadable)".to_string(), Err((400, reason))),
    };
    let (status, content_type, body) = match answer {
        Ok((call, answer)) => {
            record(&shared, call);
            answer
        }
        Err((status, reason)) => {
            let body = error_document(&request, status, &reason);
            record(
                &shared,
                Call::Refused {
                    request,
                    status,
                    reason,
                },
            );
            body
        }
    };
    let headers = [
        ("Content-Type", content_type),
        ("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000"),
    ];
    http::respond(&mut stream, status, &headers, &body).await;
}

fn record(shared: &Shared, call: Call) {
    if let Ok(mut calls) = shared.calls.lock() {
        calls.push(call);
    }
}

/// The call and its answer, or an error status and reason.
fn route(request: &Request, shared: &Shared) -> Result<(Call, Answer), (u16, String)> {
    match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/") => sts(request, shared),
        ("GET", "/federation/credentials") => sso(request, shared),
        _ => Err((400, format!("no such API: {}", request.line()))),
    }
}

/// STS, query protocol.
fn sts(request: &Request, shared: &Shared) -> Result<(Call, Answer), (u16, String)> {
    let content_type = request.header("content-type").unwrap_or_default();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err((400, format!("unexpected content-type {content_type:?}")));
    }
    let body = std::str::from_utf8(&request.body).map_err(|_| (400, "body is not UTF-8".into()))?;
    let form = parse_form(body).map_err(|e| (400, e))?;
    let param = |name: &str| {
        form.get(name)
            .cloned()
            .ok_or_else(|| (400, format!("missing parameter {name}")))
    };
    if param("Version")? != "2011-06-15" {
        return Err((400, "unexpected Version".into()));
    }
    let action = param("Action")?;
    let role_arn = param("RoleArn")?;
    let role_session_name = param("RoleSessionName")?;
    let call = match action.as_str() {
        "AssumeRoleWithWebIdentity" => Call::AssumeRoleWithWebIdentity {
            role_arn: role_arn.clone(),
            role_session_name: role_session_name.clone(),
            web_identity_token: param("WebIdentityToken")?,
            authorization: request.header("authorization").map(str::to_string),
        },
        "AssumeRole" => Call::AssumeRole {
            role_arn: role_arn.clone(),
            role_session_name: role_session_name.clone(),
            signed_by: verify_sigv4(request, &shared.known_keys).map_err(|e| (403, e))?,
        },
        other => return Err((400, format!("unsupported Action {other:?}"))),
    };
    let issued = &shared.issued;
    let expiration = SigningTime::from_system_time(SystemTime::now() + issued.expires_in).rfc3339();
    let role_name = role_arn.rsplit('/').next().unwrap_or("role");
    let subject = if action == "AssumeRoleWithWebIdentity" {
        "<SubjectFromWebIdentityToken>system:serviceaccount:default:test</SubjectFromWebIdentityToken>"
    } else {
        ""
    };
    let body = format!(
        "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n\
         <{action}Result>{subject}\n\
         <AssumedRoleUser><Arn>arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}</Arn>\
         <AssumedRoleId>AROAEXAMPLEROLEID:{session}</AssumedRoleId></AssumedRoleUser>\n\
         <Credentials><AccessKeyId>{akid}</AccessKeyId>\
         <SecretAccessKey>{secret}</SecretAccessKey>\
         <SessionToken>{token}</SessionToken>\
         <Expiration>{expiration}</Expiration></Credentials>\n\
         </{action}Result>\n\
         <ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId>\
         </ResponseMetadata>\n</{action}Response>\n",
        role = xml_escape(role_name),
        session = xml_escape(&role_session_name),
        akid = xml_escape(&issued.access_key_id),
        secret = xml_escape(&issued.secret_access_key),
        token = xml_escape(&issued.session_token),
    );
    Ok((call, (200, "text/xml", body)))
}

/// SSO portal, `GetRoleCredentials`.
fn sso(request: &Request, shared: &Shared) -> Result<(Call, Answer), (u16, String)> {
    let query = parse_form(&request.query).map_err(|e| (400, e))?;
    let param = |name: &str| {
        query
            .get(name)
            .cloned()
            .ok_or_else(|| (400, format!("missing query parameter {name}")))
    };
    let bearer_token = request
        .header("x-amz-sso_bearer_token")
        .ok_or_else(|| (401, "missing x-amz-sso_bearer_token".to_string()))?
        .to_string();
    let call = Call::GetRoleCredentials {
        role_name: param("role_name")?,
        account_id: param("account_id")?,
        bearer_token,
    };
    let issued = &shared.issued;
    let expiration = SystemTime::now() + issued.expires_in;
    let millis = expiration
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let body = serde_json::json!({
        "roleCredentials": {
            "accessKeyId": issued.access_key_id,
            "secretAccessKey": issued.secret_access_key,
            "sessionToken": issued.session_token,
            "expiration": millis,
        }
    })
    .to_string();
    Ok((call, (200, "application/json", body)))
}

/// The error document of the API the request was meant for.
fn error_document(request: &str, status: u16, reason: &str) -> Answer {
    if request.starts_with("GET ") {
        let body = serde_json::json!({ "message": reason }).to_string();
        (status, "application/json", body)
    } else {
        let code = if status == 403 {
            "SignatureDoesNotMatch"
        } else {
            "InvalidRequest"
        };
        let body = format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error>\
             <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>",
            xml_escape(reason)
        );
        (status, "text/xml", body)
    }
}

/// Verifies a SigV4 `Authorization` header against the request as received, with the
/// secret of its access key id. The error says why (never the secret or the signature).
fn verify_sigv4(
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

/// `application/x-www-form-urlencoded` (also a query string): `+` is a space, `%XX` a byte.
/// A repeated name keeps its last value.
fn parse_form(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(name)?, percent_decode(value)?);
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let byte = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-encoding in {s:?}"))?;
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn forms_decode_and_bad_encodings_are_errors() {
        let form = parse_form("Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr&A=b+c")
            .unwrap();
        assert_eq!(form["RoleArn"], "arn:aws:iam::1:role/r");
        assert_eq!(form["A"], "b c");
        assert!(parse_form("a=%zz").is_err());
        assert!(parse_form("a=%4").is_err());
        assert!(parse_form("a=%ff").is_err(), "not UTF-8");
    }

    /// Sends raw bytes, returns the status code of the answer (0 if none).
    async fn status_of(endpoint: &StsSsoEndpoint, raw: &[u8]) -> u16 {
        let mut stream = TcpStream::connect(endpoint.addr).await.unwrap();
        stream.write_all(raw).await.unwrap();
        stream.shutdown().await.ok();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.ok();
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Malformed or unexpected requests get a 4xx, are recorded as refused, and the server
    /// keeps serving.
    #[tokio::test]
    async fn bad_requests_get_4xx_and_the_server_keeps_serving() {
        let issued = Issued {
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            session_token: "token".into(),
            expires_in: Duration::from_secs(60),
        };
        let endpoint = StsSsoEndpoint::start(issued, &[("AKIDSRC", "src")])
            .await
            .unwrap();
        let form = |body: &str| {
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (b"garbage\r\n\r\n".to_vec(), 400),
            (b"GET /nope HTTP/1.1\r\n\r\n".to_vec(), 400),
            (b"POST / HTTP/1.1\r\nNoColon\r\n\r\n".to_vec(), 400),
            (
                b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n".to_vec(),
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n".to_vec(),
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort".to_vec(),
                400,
            ),
            (form("Action=AssumeRole").into_bytes(), 400),
            (
                form("Action=AssumeRole&Version=2011-06-15&RoleArn=%zz").into_bytes(),
                400,
            ),
            (
                form("Action=GetCallerIdentity&Version=2011-06-15&RoleArn=a&RoleSessionName=s")
                    .into_bytes(),
                400,
            ),
            // Unsigned AssumeRole: refused as real STS would.
            (
                form("Action=AssumeRole&Version=2011-06-15&RoleArn=a&RoleSessionName=s")
                    .into_bytes(),
                403,
            ),
            (
                b"GET /federation/credentials?role_name=r&account_id=1 HTTP/1.1\r\n\r\n".to_vec(),
                401,
            ),
            (
                b"GET /federation/credentials?role_name=r HTTP/1.1\r\n\
                  x-amz-sso_bearer_token: t\r\n\r\n"
                    .to_vec(),
                400,
            ),
        ];
        for (raw, expected) in &cases {
            let got = status_of(&endpoint, raw).await;
            assert_eq!(got, *expected, "{}", String::from_utf8_lossy(raw));
        }
        let calls = endpoint.calls();
        assert_eq!(calls.len(), cases.len(), "{calls:?}");
        assert!(
            calls.iter().all(|c| matches!(c, Call::Refused { .. })),
            "{calls:?}"
        );

        // Still serving, and a good request is answered with the credentials.
        let web = form(
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr\
             &RoleSessionName=s&WebIdentityToken=jwt",
        );
        assert_eq!(status_of(&endpoint, web.as_bytes()).await, 200);
        assert_eq!(
            endpoint.calls().last(),
            Some(&Call::AssumeRoleWithWebIdentity {
                role_arn: "arn:aws:iam::1:role/r".into(),
                role_session_name: "s".into(),
                web_identity_token: "jwt".into(),
                authorization: None,
            })
        );
    }

    #[test]
    fn the_sso_cache_name_is_the_sha1_of_the_identifier() {
        // aws-config's own vectors (sso/cache.rs, `determine_correct_cache_filenames`).
        assert_eq!(
            sso_cache_file_name("dev-scopes"),
            "75e4d41276d8bd17f85986fc6cccef29fd725ce3.json"
        );
        assert_eq!(
            sso_cache_file_name("https://d-92671207e4.awsapps.com/start"),
            "13f9d35043871d073ab260e020f0ffde092cb14b.json"
        );
    }
}
