//! A credentials endpoint on loopback, scripted per credentials request: temporary
//! credentials with an expiry, or an HTTP error. It serves both shapes the credential chain
//! knows: a container endpoint (what ECS and EKS Pod Identity serve at
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI`) and EC2 instance metadata with IMDSv2 sessions
//! (`AWS_EC2_METADATA_SERVICE_ENDPOINT`): `PUT /latest/api/token` gives a session token,
//! `GET …/security-credentials/` the role name, `GET …/security-credentials/ROLE` the
//! credentials; IMDS GETs without the session token are refused (401), as IMDSv2 requires.
//! It drives credential-expiry refreshes and refresh failures in tests without any AWS
//! endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use efs_proxy::iam::SigningTime;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::{read_request, respond};

/// The answer to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Temporary credentials expiring `expires_in` from now.
    Credentials {
        access_key_id: String,
        secret_access_key: String,
        token: String,
        expires_in: Duration,
    },
    /// An HTTP error status with a short body.
    Fail(u16),
}

type Script = dyn Fn(usize) -> Reply + Send + Sync;

/// The IMDSv2 session token handed out (not a credential).
const IMDS_SESSION: &str = "imds-session-token";
/// The instance role name.
const IMDS_ROLE: &str = "test-instance-role";

/// A running endpoint; stops when dropped.
pub struct CredentialsEndpoint {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

impl Drop for CredentialsEndpoint {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl CredentialsEndpoint {
    /// Serves `script(n)` to the `n`-th request (from 0).
    pub async fn start(
        script: impl Fn(usize) -> Reply + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let script: Arc<Script> = Arc::new(script);
        let (count, stop) = (requests.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => match r { Ok(p) => p, Err(_) => continue },
                };
                let (script, count) = (script.clone(), count.clone());
                tokio::spawn(async move {
                    let Ok(Some(request)) = read_request(&mut stream).await else {
                        return;
                    };
                    let path = request.path.as_str();
                    let imds = path.starts_with("/latest/");
                    let imds_session = request.header("x-aws-ec2-metadata-token").is_some();
                    let reply = if request.method == "PUT" && path == "/latest/api/token" {
                        Err((200, IMDS_SESSION.to_string()))
                    } else if imds && !imds_session {
                        Err((401, String::new()))
                    } else if path.ends_with("/security-credentials/") {
                        Err((200, IMDS_ROLE.to_string()))
                    } else {
                        Ok(script(count.fetch_add(1, Ordering::SeqCst)))
                    };
                    let (status, body) = match reply {
                        Err(answer) => answer,
                        Ok(reply) => match reply {
                            Reply::Credentials {
                                access_key_id,
                                secret_access_key,
                                token,
                                expires_in,
                            } => {
                                let expiration =
                                    SigningTime::from_system_time(SystemTime::now() + expires_in);
                                let body = format!(
                                    "{{\"Code\":\"Success\",\"Type\":\"AWS-HMAC\",\
                                 \"AccessKeyId\":\"{access_key_id}\",\"SecretAccessKey\":\
                                 \"{secret_access_key}\",\"Token\":\"{token}\",\
                                 \"Expiration\":\"{}\"}}",
                                    expiration.rfc3339()
                                );
                                (200, body)
                            }
                            Reply::Fail(code) => {
                                (code, "{\"message\":\"scripted failure\"}".into())
                            }
                        },
                    };
                    // IMDSv2 session tokens come with their lifetime.
                    let mut headers = vec![("Content-Type", "application/json")];
                    if body == IMDS_SESSION {
                        headers.push(("x-aws-ec2-metadata-token-ttl-seconds", "21600"));
                    }
                    respond(&mut stream, status, &headers, &body).await;
                });
            }
        });
        Ok(CredentialsEndpoint {
            addr,
            requests,
            shutdown,
        })
    }

    /// The value for `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub fn imds_endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The value for `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub fn uri(&self) -> String {
        format!("http://{}/credentials", self.addr)
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}
