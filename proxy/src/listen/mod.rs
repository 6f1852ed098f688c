//! The listener layer: accept NFS client connections and run one session per connection.
//!
//! Unlike AWS's efs-proxy, which serves one client connection at a time, every accepted
//! connection gets its own task and its own server connection, so a second mount, a port
//! probe or a reconnect never waits behind another connection.

pub(crate) mod accept;
pub(crate) mod peer;
mod sock_diag;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use efs_rpc::awsfile::{BindClientResponse, BindResponse, PartitionId, ProxyIdentifier};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::ProxyConfig;
use crate::error::{BindError, ConnectError, StartError};
use crate::files::escape_controls;
use crate::forward::{ForwardEnd, Leg, ScalePolicy, Session, SessionLimits};
use crate::io::ServerStream;
use crate::listen::accept::{Connections, FirstRecordEnd, FirstRecords, Slot, SpareFd};
use crate::listen::peer::UidPolicy;
use crate::stats::Stats;
use crate::upstream::bind::{ProxyIdentity, bind_client_to_partition};
use crate::upstream::dial::{Dialer, Security, limit_by};
use crate::upstream::scale::{Backoff, GroupScaler, SearchLimits};
use crate::upstream::tls::{self, TlsConfigHandle};

/// State shared by all sessions of one proxy.
struct Shared {
    dialer: Dialer,
    identity: ProxyIdentity,
    stats: Arc<Stats>,
    bind_timeout: Duration,
    connect_deadline: Option<Duration>,
    first_record_timeout: Duration,
    connections: Arc<Connections>,
    uids: UidPolicy,
    max_record_size: usize,
    server_timeout: Option<Duration>,
    scale_up: bool,
    scale_search: SearchLimits,
    scale_backoff: Arc<Backoff>,
    /// Set once a server refused bind, so the "forwarding without bind" note is logged once.
    refusal_logged: AtomicBool,
}

/// A proxy bound to its listen address, ready to [`run`](Proxy::run).
pub(crate) struct Proxy {
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsConfigHandle>,
}

impl Proxy {
    /// Binds the listen address of `config` and prepares the TLS configuration.
    pub(crate) async fn bind(config: ProxyConfig) -> Result<Proxy, StartError> {
        // Before binding: a refused address is never listened on, even briefly.
        if !config.listen.ip().is_loopback() && !config.allow_remote {
            return Err(StartError::RemoteListen {
                addr: config.listen,
            });
        }
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
    pub(crate) fn from_listener(
        listener: TcpListener,
        config: ProxyConfig,
    ) -> Result<Proxy, StartError> {
        let addr = listener.local_addr().unwrap_or(config.listen);
        if !addr.ip().is_loopback() && !config.allow_remote {
            return Err(StartError::RemoteListen { addr });
        }
        let (security, tls) = match &config.tls {
            None => (Security::Plaintext, None),
            Some(settings) => {
                if settings.trust == tls::Trust::NoVerify {
                    warn!(
                        "server certificate verification is OFF (--no-verify): anyone on the \
                         path can impersonate the mount target; use only for testing"
                    );
                }
                let mut client = tls::client_config(
                    &settings.trust,
                    settings.verify_hostname,
                    settings.identity.as_ref(),
                )?;
                client.enable_sni = settings.send_sni;
                let handle = TlsConfigHandle::new(client);
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
            connect_deadline: config.connect_deadline,
            first_record_timeout: config.first_record_timeout,
            connections: Connections::new(max_connections(config.max_connections)),
            uids: uid_policy(config.allowed_uids),
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
    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The live TLS configuration, to replace the client certificate while running.
    pub(crate) fn tls_handle(&self) -> Option<TlsConfigHandle> {
        self.tls.clone()
    }

    /// Live counters.
    pub(crate) fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    /// Accepts and serves connections until `shutdown` is cancelled, then closes every open
    /// connection and waits (up to `drain`) for their tasks to finish.
    pub(crate) async fn run(self, shutdown: CancellationToken, drain: Duration) {
        let tasks = TaskTracker::new();
        let mut spare = SpareFd::new();
        let mut over_cap = RateLimit::default();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (client, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    self.accept_failed(&e, &mut spare).await;
                    continue;
                }
            };
            let Some((slot, evicted)) = self.shared.connections.admit() else {
                if over_cap.ready() {
                    warn!(
                        "{} client connections open, all past their first record \
                         (--max-connections): closing the new connection from {peer}",
                        self.shared.connections.cap()
                    );
                }
                continue; // dropping `client` closes it
            };
            let shared = self.shared.clone();
            let cancel = shutdown.child_token();
            let span = info_span!("conn", client = %peer);
            tasks.spawn(
                async move {
                    tokio::select! {
                        _ = cancel.cancelled() => debug!("closed by shutdown"),
                        _ = evicted.cancelled() => debug!(
                            "closed while waiting for its first record, to make room for a \
                             new connection (connection cap or open-file limit reached)"
                        ),
                        _ = async {
                            if peer_allowed(&client, peer, &shared).await {
                                serve_client(client, shared, &slot).await;
                            }
                        } => {}
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

    /// Out of file descriptors: close the oldest connection still waiting for its first
    /// record, or else accept and close the connection at the head of the backlog with the
    /// spare descriptor, so the backlog moves and clients see a close instead of a hang.
    /// Other errors: back off briefly instead of spinning.
    async fn accept_failed(&self, e: &std::io::Error, spare: &mut SpareFd) {
        if !accept::is_fd_exhaustion(e) {
            warn!("accept failed: {e}; retrying in 100 ms");
            tokio::time::sleep(Duration::from_millis(100)).await;
            return;
        }
        if self.shared.connections.evict_oldest_waiting() {
            debug!("accept: {e}; closed the oldest connection waiting for its first record");
            // Let the evicted connection's task close its socket.
            tokio::time::sleep(Duration::from_millis(1)).await;
            return;
        }
        spare.release();
        if let Ok(Ok((client, peer))) =
            tokio::time::timeout(Duration::from_millis(10), self.listener.accept()).await
        {
            drop(client);
            warn!(
                "accept: {e}: the open-file limit is reached; closed the new connection from \
                 {peer} (raise the limit, e.g. LimitNOFILE= / ulimit -n, or lower \
                 --max-connections)"
            );
        }
        spare.restore();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// At most one log line per interval (a flood of refused connections is one line, not many).
#[derive(Default)]
struct RateLimit(Option<Instant>);

impl RateLimit {
    fn ready(&mut self) -> bool {
        let now = Instant::now();
        if self
            .0
            .is_some_and(|last| now < last + Duration::from_secs(10))
        {
            return false;
        }
        self.0 = Some(now);
        true
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

/// Whether the local user owning the client's socket may use this host's IAM identity
/// ([`UidPolicy`]); a refusal is one warning line.
async fn peer_allowed(client: &TcpStream, peer: SocketAddr, shared: &Shared) -> bool {
    if shared.uids == UidPolicy::Any {
        return true;
    }
    let owner = client
        .local_addr()
        .ok()
        .and_then(|local| peer::socket_owner(peer, local));
    match owner {
        Some(uid) if shared.uids.allows(uid) => true,
        Some(uid) => {
            warn!(
                "refused: the connection from {peer} belongs to uid {uid}, which may not use this \
                 host's IAM identity (allowed: {}; widen with --allow-uid)",
                shared.uids.describe()
            );
            false
        }
        None => {
            // Gone already (a port probe that closed), or not listed: refuse either way.
            let mut byte = [0u8; 1];
            if !matches!(client.try_read(&mut byte), Ok(0)) {
                warn!(
                    "refused: cannot tell which user owns the connection from {peer} (neither \
                     sock_diag nor /proc/net/tcp{{,6}} lists it); --allow-uid any serves everyone"
                );
            }
            false
        }
    }
}

async fn serve_client(mut client: TcpStream, shared: Arc<Shared>, slot: &Slot) {
    let stats = &shared.stats;
    Stats::bump(&stats.connections_accepted);
    client.set_nodelay(true).ok();

    // efs-utils' mount helper probes the port by connecting and closing without a byte. Wait
    // for the first record before dialling, so probes and idle connections cost no server
    // connection, and close a connection that sends none in time.
    let first = accept::read_first_records(
        &mut client,
        shared.max_record_size,
        shared.first_record_timeout,
    )
    .await;
    let first = match first {
        Ok(first) => first,
        Err(end @ (FirstRecordEnd::Probe | FirstRecordEnd::Closed(_))) => {
            debug!("client {end}");
            return;
        }
        Err(end @ FirstRecordEnd::Invalid(_)) => {
            warn!("connection closed: {end}");
            return;
        }
        Err(end) => {
            info!("connection closed: {end}");
            return;
        }
    };
    slot.served();

    let established = match connect_and_bind(&shared).await {
        Ok(established) => established,
        Err(e) => {
            Stats::bump(&stats.connect_failures);
            warn!(layer = %e.layer(), "cannot reach the mount target: {e}");
            return; // dropping the client makes the NFS client retry
        }
    };
    log_established(&established);
    let session = session(client, first, established, &shared);
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

fn log_established(established: &Established) {
    let Established {
        stream, addr, bind, ..
    } = established;
    let security = stream.tls_summary().unwrap_or_else(|| "plaintext".into());
    match bind {
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
        warn!(
            server = %addr,
            "the mount target answered bind with ERROR: {}",
            escape_controls(message)
        );
    }
}

/// The forwarding session of a client connection over its first server connection, with
/// scale-up when the bind allows it.
fn session(
    client: TcpStream,
    first: FirstRecords,
    established: Established,
    shared: &Arc<Shared>,
) -> Session<TcpStream, ServerStream> {
    let Established {
        stream,
        id,
        bind,
        pending,
        ..
    } = established;
    let limits = SessionLimits {
        max_record_size: shared.max_record_size,
        server_timeout: shared.server_timeout,
    };
    let leg = Leg::new(0, stream, pending, shared.max_record_size);
    let mut session = Session::new(client, leg, limits, shared.stats.clone())
        .with_client_records(first.records, first.rest);
    if let Some((policy, partition)) = scale_policy(shared, bind.as_ref()) {
        let scaler = GroupScaler {
            dialer: shared.dialer.clone(),
            id,
            partition,
            max_record_size: shared.max_record_size,
            bind_timeout: shared.bind_timeout,
            limits: shared.scale_search,
            stats: shared.stats.clone(),
            next_leg: 1,
            backoff: shared.scale_backoff.clone(),
        };
        session = session.with_scaling(policy, Box::new(scaler));
    }
    session
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

/// The uid policy in force: where socket owners cannot be found (not Linux), everyone, said
/// once at start.
fn uid_policy(wanted: UidPolicy) -> UidPolicy {
    if wanted != UidPolicy::Any && !cfg!(target_os = "linux") {
        warn!(
            "connections are not checked by user on this system (only Linux lists socket \
             owners): every local user can use this host's IAM identity"
        );
        return UidPolicy::Any;
    }
    wanted
}

/// The connection cap in force: `wanted`, lowered (and logged) to fit the open-file limit.
fn max_connections(wanted: usize) -> usize {
    let (cap, limit) = accept::effective_cap(wanted);
    if let Some(limit) = limit {
        warn!(
            "at most {cap} client connections (--max-connections {wanted} lowered to fit the \
             open-file limit of {limit}; raise it with LimitNOFILE= or ulimit -n)"
        );
    }
    cap
}

/// Upper bound on server connections per client connection.
pub(crate) const MAX_CONNECTIONS_PER_CLIENT: usize = 16;

/// Opens a server connection and binds it; falls back to a fresh connection without bind when
/// the server does not speak AWSFILE (efs-proxy's behaviour, so plain NFS servers work), and
/// when the bind exchange fails on a closed or broken connection (see [`bind_fallback`]).
async fn connect_and_bind(shared: &Shared) -> Result<Established, ConnectError> {
    let deadline = shared
        .connect_deadline
        .and_then(|limit| Instant::now().checked_add(limit));
    let id = shared.identity.next_incarnation();
    let (mut stream, addr) = shared.dialer.connect_by(deadline).await?;
    let result = bind_client_to_partition(
        &mut stream,
        &id,
        shared.max_record_size,
        limit_by(shared.bind_timeout, deadline),
    )
    .await;
    match result {
        Ok((response, pending)) => {
            Stats::bump(&shared.stats.binds);
            if let Some(partition) = response.bind_response.ready_partition() {
                shared.stats.ready(&partition.0);
            }
            Ok(Established {
                stream,
                addr,
                id,
                bind: Some(response),
                pending,
            })
        }
        Err(e) => {
            bind_fallback(shared, e, addr)?;
            drop(stream);
            let (stream, addr) = shared.dialer.connect_by(deadline).await?;
            Ok(Established {
                stream,
                addr,
                id,
                bind: None,
                pending: BytesMut::new(),
            })
        }
    }
}

/// Whether a failed bind is followed by a fresh connection without bind (`Ok`) or ends the
/// client connection (`Err`), and the log line that says so.
///
/// - An RPC refusal (PROG_UNAVAIL, garbage): a plain NFS server; logged once at info.
/// - The connection closed or broke during bind: efs-proxy falls back too. A mount that works
///   without multiplexing beats a client connection closed on every attempt, which a hard
///   mount retries silently forever; if the server refuses the unbound connection as well, the
///   client connection is closed then, and this warning says what happened first.
/// - A TLS alert (the server rejected the client certificate) or a timeout: a fresh connection
///   would fail the same way, later and less clearly, so the client connection is closed.
fn bind_fallback(shared: &Shared, e: BindError, addr: SocketAddr) -> Result<(), ConnectError> {
    if e.is_rpc_refusal() {
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
        return Ok(());
    }
    if e.is_broken_connection() {
        Stats::bump(&shared.stats.bind_refusals);
        warn!(
            layer = "bind",
            "bind: {e}; forwarding without bind on a fresh connection, as efs-proxy (no \
             partition, no scale-up)"
        );
        return Ok(());
    }
    Err(ConnectError::Bind(e))
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
