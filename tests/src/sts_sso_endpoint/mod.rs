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

mod encoding;
mod server;
mod sigv4;
mod sso;
mod sts;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
                tokio::spawn(server::serve(stream, shared.clone()));
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
