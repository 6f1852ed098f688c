//! The scale-up search: more connections bound to the same partition, opened in the background
//! while the client connection keeps going (AWS's efs-proxy instead restarts the client
//! connection when the partition differs; this proxy never drops the client to scale up).
//!
//! Mirrors efs-proxy's `establish_multiplex_connection` (docs/protocol.md §7.4): up to three
//! connect+bind attempts in flight, a bounded number of attempts and an overall deadline.
//! READY on the group's partition joins the group; READY elsewhere, RETRY and PREFERRED are
//! closed and another attempt is made; RETRY_LATER, ERROR, or a failure other than a plain I/O
//! error ends the search with a back-off.

use std::sync::Arc;
use std::time::Duration;

use efs_rpc::awsfile::{BindResponse, PartitionId, ProxyIdentifier};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::error::{BindError, ConnectError, failure_text};
use crate::forward::{Leg, LegEvent, LegSource};
use crate::io::ServerStream;
use crate::stats::Stats;
use crate::upstream::bind::bind_client_to_partition;
use crate::upstream::dial::Dialer;

/// Bounds of one search.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SearchLimits {
    /// Attempts in flight at once (efs-proxy: 3).
    pub concurrent: usize,
    /// Attempts in total (efs-proxy: 120).
    pub max_attempts: usize,
    /// The whole search (efs-proxy: 15 s).
    pub deadline: Duration,
    /// Wait before the next search after RETRY_LATER, ERROR or a failed search (efs-proxy:
    /// 300 s).
    pub backoff: Duration,
}

impl Default for SearchLimits {
    fn default() -> Self {
        SearchLimits {
            concurrent: 3,
            max_attempts: 120,
            deadline: Duration::from_secs(15),
            backoff: Duration::from_secs(300),
        }
    }
}

/// Opens connections for one client connection's group.
pub(crate) struct GroupScaler {
    pub dialer: Dialer,
    /// The identifier the group's first connection bound with (one incarnation per client
    /// connection, shared by all its server connections).
    pub id: ProxyIdentifier,
    pub partition: PartitionId,
    pub max_record_size: usize,
    pub bind_timeout: Duration,
    pub limits: SearchLimits,
    pub stats: Arc<Stats>,
    /// Id for the next leg (the first connection is 0).
    pub next_leg: usize,
    /// Shared by every client connection of the proxy: RETRY_LATER is about the file
    /// system, not one connection.
    pub backoff: Arc<Backoff>,
}

/// "Do not search before" for the whole proxy.
#[derive(Debug, Default)]
pub(crate) struct Backoff(std::sync::Mutex<Option<tokio::time::Instant>>);

impl Backoff {
    fn active(&self) -> bool {
        let until = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|t| tokio::time::Instant::now() < t)
    }

    fn set(&self, wait: Duration) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(tokio::time::Instant::now() + wait);
    }
}

/// The outcome of one connect+bind attempt.
enum Attempt {
    Bound(ServerStream, bytes::BytesMut, BindResponse),
    /// Worth retrying (refused, reset).
    Transient(String),
    /// Ends the search (TLS failure, timeout, garbage).
    Fatal(String),
}

impl LegSource<ServerStream> for GroupScaler {
    fn start(&mut self, wanted: usize) -> Option<mpsc::Receiver<LegEvent<ServerStream>>> {
        if self.backoff.active() {
            return None;
        }
        let (tx, rx) = mpsc::channel(wanted.max(1));
        let first_id = self.next_leg;
        self.next_leg += wanted;
        let search = Search {
            dialer: self.dialer.clone(),
            id: self.id.clone(),
            partition: self.partition,
            max_record_size: self.max_record_size,
            bind_timeout: self.bind_timeout,
            limits: self.limits,
            stats: self.stats.clone(),
            backoff: self.backoff.clone(),
        };
        tokio::spawn(search.run(wanted, first_id, tx));
        Some(rx)
    }
}

struct Search {
    dialer: Dialer,
    id: ProxyIdentifier,
    partition: PartitionId,
    max_record_size: usize,
    bind_timeout: Duration,
    limits: SearchLimits,
    stats: Arc<Stats>,
    backoff: Arc<Backoff>,
}

impl Search {
    async fn run(self, wanted: usize, first_id: usize, tx: mpsc::Sender<LegEvent<ServerStream>>) {
        let this = Arc::new(self);
        let deadline = tokio::time::Instant::now() + this.limits.deadline;
        let mut attempts = JoinSet::new();
        let mut started = 0;
        let mut found = 0;
        let backoff = this.limits.backoff;
        let verdict: Result<(), String> = loop {
            // One spare attempt beyond what is still wanted absorbs a RETRY without waiting,
            // and leaves at most one extra connection to close once enough are found.
            let in_flight = this.limits.concurrent.min(wanted - found + 1);
            while found < wanted && attempts.len() < in_flight && started < this.limits.max_attempts
            {
                started += 1;
                attempts.spawn(this.clone().attempt());
            }
            if found >= wanted {
                break Ok(());
            }
            let next = tokio::time::timeout_at(deadline, attempts.join_next()).await;
            let attempt = match next {
                Err(_) => break Err(format!("no answer within {:?}", this.limits.deadline)),
                Ok(None) => break Err(format!("{started} attempts made")),
                Ok(Some(Err(join))) => break Err(format!("attempt task failed: {join}")),
                Ok(Some(Ok(attempt))) => attempt,
            };
            match attempt {
                Attempt::Bound(stream, pending, BindResponse::Ready(p)) if p == this.partition => {
                    let leg = Leg::new(first_id + found, stream, pending, this.max_record_size);
                    found += 1;
                    if tx.send(LegEvent::Ready(Box::new(leg))).await.is_err() {
                        return; // the client connection ended meanwhile
                    }
                }
                Attempt::Bound(stream, _, response) => {
                    let stop = matches!(
                        response,
                        BindResponse::RetryLater(_)
                            | BindResponse::Error(_)
                            | BindResponse::Unknown(_)
                    );
                    debug!("scale-up: discarding a connection bound with {response:?}");
                    close(stream).await;
                    if stop {
                        break Err(format!("the server answered {response:?}"));
                    }
                }
                Attempt::Transient(reason) => debug!("scale-up attempt failed: {reason}"),
                Attempt::Fatal(reason) => break Err(reason),
            }
        };
        // Attempts still running are not needed: let them finish and close what they bound,
        // politely, rather than dropping half-open TLS sessions on the server.
        tokio::spawn(async move {
            while let Some(joined) = attempts.join_next().await {
                if let Ok(Attempt::Bound(stream, ..)) = joined {
                    close(stream).await;
                }
            }
        });
        match verdict {
            Ok(()) => info!(
                "scale-up: {found} connections added on partition {}",
                this.partition
            ),
            Err(reason) => {
                warn!(
                    "scale-up stopped after {found} of {wanted} connections: {reason}; next try \
                     in {backoff:?}"
                );
                this.backoff.set(backoff);
                let _ = tx.send(LegEvent::Backoff(backoff)).await;
            }
        }
    }

    async fn attempt(self: Arc<Self>) -> Attempt {
        let (mut stream, _addr) = match self.dialer.connect().await {
            Ok(connected) => connected,
            Err(ConnectError::Tcp { attempts, .. }) => return Attempt::Transient(attempts),
            Err(e) => return Attempt::Fatal(e.to_string()),
        };
        Stats::bump(&self.stats.scale_up_attempts);
        let bound = bind_client_to_partition(
            &mut stream,
            &self.id,
            self.max_record_size,
            self.bind_timeout,
        )
        .await;
        match bound {
            Ok((response, pending)) => Attempt::Bound(stream, pending, response.bind_response),
            Err(BindError::Io { source, .. }) => Attempt::Transient(failure_text(&source)),
            Err(e) => Attempt::Fatal(format!("bind: {e}")),
        }
    }
}

/// Closes a connection the group does not keep, politely (TLS close_notify).
async fn close(mut stream: ServerStream) {
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.shutdown()).await;
}
