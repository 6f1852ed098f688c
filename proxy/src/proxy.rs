//! The listener layer: accept NFS client connections and run one session per connection.
//!
//! Unlike AWS's efs-proxy, which serves one client connection at a time, every accepted
//! connection gets its own task and its own server connection, so a second mount, a port
//! probe or a reconnect never waits behind another connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use efs_rpc::awsfile::{BindClientResponse, BindResponse, PartitionId, ProxyIdentifier};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::bind::{ProxyIdentity, bind_client_to_partition};
use crate::config::ProxyConfig;
use crate::connect::{Dialer, Security, ServerStream};
use crate::error::{ConnectError, StartError};
use crate::forward::{ForwardEnd, Leg, ScalePolicy, Session, SessionLimits};
use crate::scale::{Backoff, GroupScaler, SearchLimits};
use crate::stats::{Stats, StatsSnapshot};
use crate::tls::{self, TlsConfigHandle};

/// State shared by all sessions of one proxy.
struct Shared {
    dialer: Dialer,
    identity: ProxyIdentity,
    stats: Arc<Stats>,
    bind_timeout: Duration,
    max_record_size: usize,
    server_timeout: Option<Duration>,
    scale_up: bool,
    scale_search: SearchLimits,
    scale_backoff: Arc<Backoff>,
    /// Set once a server refused bind, so the "forwarding without bind" note is logged once.
    refusal_logged: AtomicBool,
}

/// A proxy bound to its listen address, ready to [`run`](Proxy::run).
pub struct Proxy {
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsConfigHandle>,
}

impl Proxy {
    /// Binds the listen address of `config` and prepares the TLS configuration.
    pub async fn bind(config: ProxyConfig) -> Result<Proxy, StartError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        Self::from_listener(listener, config)
    }

    /// Uses an already-bound listener (its address wins over `config.listen`).
    pub fn from_listener(listener: TcpListener, config: ProxyConfig) -> Result<Proxy, StartError> {
        let (security, tls) = match &config.tls {
            None => (Security::Plaintext, None),
            Some(settings) => {
                if settings.trust == tls::Trust::NoVerify {
                    warn!(
                        "server certificate verification is OFF (--no-verify): anyone on the \
                         path can impersonate the mount target; use only for testing"
                    );
                }
                let handle = TlsConfigHandle::new(tls::client_config(
                    &settings.trust,
                    settings.verify_hostname,
                    settings.identity.as_ref(),
                )?);
                let security = Security::Tls {
                    config: handle.clone(),
                    server_name: tls::server_name(&settings.server_name)?,
                };
                (security, Some(handle))
            }
        };
        let shared = Shared {
            dialer: Dialer {
                target: config.target.clone(),
                security,
                connect_timeout: config.connect_timeout,
                keepalive: config.keepalive,
            },
            identity: ProxyIdentity::default(),
            stats: Arc::new(Stats::default()),
            bind_timeout: config.bind_timeout,
            max_record_size: config.max_record_size,
            server_timeout: config.server_timeout,
            scale_up: config.scale_up,
            scale_search: config.scale_search,
            scale_backoff: Arc::default(),
            refusal_logged: AtomicBool::new(false),
        };
        Ok(Proxy {
            listener,
            shared: Arc::new(shared),
            tls,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The live TLS configuration, to replace the client certificate while running.
    pub fn tls_handle(&self) -> Option<TlsConfigHandle> {
        self.tls.clone()
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    /// Current counter values.
    pub fn stats_snapshot(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Accepts and serves connections until `shutdown` is cancelled, then closes every open
    /// connection and waits (up to `drain`) for their tasks to finish.
    pub async fn run(self, shutdown: CancellationToken, drain: Duration) {
        let tasks = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (client, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    warn!("accept failed: {e}; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let shared = self.shared.clone();
            let cancel = shutdown.child_token();
            let span = info_span!("conn", client = %peer);
            tasks.spawn(
                async move {
                    tokio::select! {
                        _ = cancel.cancelled() => debug!("closed by shutdown"),
                        _ = serve_client(client, shared) => {}
                    }
                }
                .instrument(span),
            );
        }
        drop(self.listener);
        tasks.close();
        if tokio::time::timeout(drain, tasks.wait()).await.is_err() {
            warn!(
                "{} connections still open after {drain:?}; exiting anyway",
                tasks.len()
            );
        }
    }
}

/// A server connection ready to forward.
struct Established {
    stream: ServerStream,
    addr: SocketAddr,
    /// The identifier this client connection's server connections bind with.
    id: ProxyIdentifier,
    /// The bind reply, or `None` when the server does not speak AWSFILE.
    bind: Option<BindClientResponse>,
    /// Bytes the server sent after its bind reply.
    pending: BytesMut,
}

async fn serve_client(client: TcpStream, shared: Arc<Shared>) {
    let stats = &shared.stats;
    Stats::bump(&stats.connections_accepted);
    client.set_nodelay(true).ok();

    // efs-utils' mount helper probes the port by connecting and closing without a byte. Wait
    // for the first byte before dialling, so probes cost no server connection.
    let mut first = [0u8; 1];
    match client.peek(&mut first).await {
        Ok(0) => {
            debug!("client closed before sending anything (port probe)");
            return;
        }
        Ok(_) => {}
        Err(e) => {
            debug!("client socket failed before sending anything: {e}");
            return;
        }
    }

    let established = match connect_and_bind(&shared).await {
        Ok(established) => established,
        Err(e) => {
            Stats::bump(&stats.connect_failures);
            warn!(layer = %e.layer(), "cannot reach the mount target: {e}");
            return; // dropping the client makes the NFS client retry
        }
    };
    let Established {
        stream,
        addr,
        id,
        bind,
        pending,
    } = established;
    let security = stream.tls_summary().unwrap_or_else(|| "plaintext".into());
    match &bind {
        Some(response) => info!(
            server = %addr, tls = %security,
            "forwarding; bind: {}, scale-up: {} connections above {} B/s",
            describe(&response.bind_response),
            response.scale_up_config.max_multiplexed_connections,
            response.scale_up_config.scale_up_bytes_per_sec_threshold,
        ),
        None => info!(server = %addr, tls = %security, "forwarding without bind"),
    }
    if let Some(BindResponse::Error(message)) = bind.as_ref().map(|r| &r.bind_response) {
        // How a mount target explains a refusal (the fake one says why an IAM certificate
        // failed); it usually closes the connection next.
        warn!(server = %addr, "the mount target answered bind with ERROR: {message}");
    }

    let limits = SessionLimits {
        max_record_size: shared.max_record_size,
        server_timeout: shared.server_timeout,
    };
    let first = Leg::new(0, stream, pending, shared.max_record_size);
    let mut session = Session::new(client, first, limits, stats.clone());
    if let Some((policy, partition)) = scale_policy(&shared, bind.as_ref()) {
        let scaler = GroupScaler {
            dialer: shared.dialer.clone(),
            id,
            partition,
            max_record_size: shared.max_record_size,
            bind_timeout: shared.bind_timeout,
            limits: shared.scale_search,
            stats: stats.clone(),
            next_leg: 1,
            backoff: shared.scale_backoff.clone(),
        };
        session = session.with_scaling(policy, Box::new(scaler));
    }

    stats.connections_active.fetch_add(1, Ordering::Relaxed);
    let end = session.run().await;
    stats.connections_active.fetch_sub(1, Ordering::Relaxed);
    match end {
        ForwardEnd::ClientClosed | ForwardEnd::ServerClosed => info!("connection ended: {end}"),
        ForwardEnd::ServerTimeout(_) => {
            Stats::bump(&stats.server_timeouts);
            warn!("connection closed: {end}")
        }
        ForwardEnd::ClientError(_) | ForwardEnd::ServerError(_) => {
            warn!("connection closed: {end}")
        }
    }
}

/// Scale-up applies to connections bound READY, when enabled and the server's `ScaleUpConfig`
/// allows more than one connection.
fn scale_policy(
    shared: &Shared,
    bind: Option<&BindClientResponse>,
) -> Option<(ScalePolicy, PartitionId)> {
    let response = bind?;
    let partition = response.bind_response.ready_partition()?;
    let config = response.scale_up_config;
    let max_legs = usize::try_from(config.max_multiplexed_connections).ok()?;
    let threshold = u64::try_from(config.scale_up_bytes_per_sec_threshold).ok()?;
    // A sane cap whatever the server says: each connection costs buffers and a TLS session.
    let policy = ScalePolicy {
        threshold_bytes_per_sec: threshold,
        max_legs: max_legs.min(MAX_CONNECTIONS_PER_CLIENT),
    };
    (shared.scale_up && policy.max_legs > 1 && threshold > 0).then_some((policy, partition))
}

/// Upper bound on server connections per client connection.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 16;

/// Opens a server connection and binds it; falls back to a fresh connection without bind when
/// the server does not speak AWSFILE (efs-proxy's behaviour, so plain NFS servers work).
async fn connect_and_bind(shared: &Shared) -> Result<Established, ConnectError> {
    let id = shared.identity.next_incarnation();
    let (mut stream, addr) = shared.dialer.connect().await?;
    let result = bind_client_to_partition(
        &mut stream,
        &id,
        shared.max_record_size,
        shared.bind_timeout,
    )
    .await;
    match result {
        Ok((response, pending)) => {
            Stats::bump(&shared.stats.binds);
            Ok(Established {
                stream,
                addr,
                id,
                bind: Some(response),
                pending,
            })
        }
        Err(e) if e.is_rpc_refusal() => {
            Stats::bump(&shared.stats.bind_refusals);
            if !shared.refusal_logged.swap(true, Ordering::Relaxed) {
                info!(
                    "bind: the server at {addr} does not speak AWSFILE ({e}); forwarding \
                     without bind on a fresh connection (expected for a plain NFS server, \
                     not for EFS or S3 Files)"
                );
            } else {
                debug!("bind refused again ({e}); forwarding without bind");
            }
            drop(stream);
            let (stream, addr) = shared.dialer.connect().await?;
            Ok(Established {
                stream,
                addr,
                id,
                bind: None,
                pending: BytesMut::new(),
            })
        }
        Err(e) => Err(ConnectError::Bind(e)),
    }
}

fn describe(response: &BindResponse) -> String {
    match response {
        BindResponse::Ready(p) => format!("READY, partition {p}"),
        BindResponse::Preferred(p) => format!("PREFERRED, partition {p}"),
        BindResponse::Retry(m) => format!("RETRY ({m:?})"),
        BindResponse::RetryLater(m) => format!("RETRY_LATER ({m:?})"),
        BindResponse::Error(m) => format!("ERROR ({m:?})"),
        BindResponse::Unknown(d) => format!("unknown response type {d}"),
    }
}
