//! The protocol layer: RPC records forwarded between one NFS client connection and a group of
//! server connections ("legs") bound to the same partition.
//!
//! One task drives everything of a client connection (a hand-written poll loop rather than a
//! task per direction and channels between them): no cross-task wake-ups on the data path, and
//! back-pressure is natural, because a record is read from one side only when the other side
//! can queue it.
//!
//! * Client → server: each call goes to the leg with the fewest bytes in flight; a client reply
//!   (to a server callback, NFSv4.1 back channel) goes to the leg that carried the callback.
//! * Server → client: records from every leg are written to the client as they arrive; the
//!   NFS client matches replies to calls by xid, so order across legs does not matter.
//! * Bytes pass through verbatim (a multi-fragment record is reassembled into one fragment);
//!   xids are read, never rewritten.
//!
//! Memory per client connection is bounded: each read buffer holds at most one incomplete
//! record (≤ max record size, grown in steps of at most 2×), and each writer queues at most
//! [`WRITE_QUEUE_LIMIT`] plus one record (a copying writer's buffer may allocate twice that
//! while it grows). See [`worst_case_memory`].
//!
//! The pieces: `session.rs` (the poll loop, routing and the call tables, the server timeout,
//! scale-up), `leg.rs` (one server connection and what is in flight on it), `writer.rs` (how
//! a socket's unwritten bytes are held).

mod leg;
mod session;
pub(crate) mod writer;

pub use leg::Leg;
pub use session::Session;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use efs_rpc::{Record, RecordError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::stats::Stats;

/// Bytes a writer may queue before the other side stops being read.
pub(crate) const WRITE_QUEUE_LIMIT: usize = 256 * 1024;
/// How long closing the connections may take before they are simply dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Records moved per direction in one poll before yielding to other tasks.
const RECORDS_PER_POLL: usize = 64;
/// Calls tracked for routing; past this, calls are forwarded untracked (a client this far
/// ahead of its server is misbehaving, and the table must stay bounded).
const MAX_TRACKED_CALLS: usize = 65_536;
/// Throughput is measured over this many one-second ticks (efs-proxy: 3 s reports).
const RATE_WINDOW: usize = 3;

/// Upper bound of the memory one client connection can hold in buffers, with `legs` server
/// connections: a read buffer per socket (up to twice a record while growing) and a write
/// queue per socket (the limit plus one record, up to twice that allocated while a copying
/// writer's buffer grows).
pub fn worst_case_memory(max_record_size: usize, legs: usize) -> usize {
    let per_socket = 2 * (max_record_size + 4) + 2 * (WRITE_QUEUE_LIMIT + max_record_size + 4);
    per_socket * (legs + 1)
}

/// Why forwarding ended.
#[derive(Debug)]
pub enum ForwardEnd {
    /// The NFS client closed its connection (unmount, or reconnect).
    ClientClosed,
    /// The server closed its connection.
    ServerClosed,
    /// The client sent bytes that are not valid records, or its socket failed.
    ClientError(RecordError),
    /// The server sent bytes that are not valid records, or its socket failed.
    ServerError(RecordError),
    /// Calls were outstanding and no server answered for this long: a dead or unreachable
    /// server (the socket may still look open).
    ServerTimeout(Duration),
}

impl std::fmt::Display for ForwardEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardEnd::ClientClosed => f.write_str("client closed the connection"),
            ForwardEnd::ServerClosed => f.write_str("server closed the connection"),
            ForwardEnd::ClientError(e) => write!(f, "client side failed: {e}"),
            ForwardEnd::ServerError(e) => write!(f, "server side failed: {e}"),
            ForwardEnd::ServerTimeout(d) => write!(
                f,
                "server did not answer outstanding calls for {d:?}; closing so the NFS client \
                 reconnects (dead server, or a network path that drops packets)"
            ),
        }
    }
}

/// What a [`LegSource`] reports while adding connections to a group.
pub enum LegEvent<S> {
    /// A new connection bound to the group's partition: start using it.
    Ready(Box<Leg<S>>),
    /// The server asked to wait (RETRY_LATER, ERROR) or the search failed: the source will
    /// not search again for this long.
    Backoff(Duration),
}

/// Opens more server connections on request (the scale-up search). The session calls
/// [`LegSource::start`] when throughput crosses the threshold; the returned channel delivers
/// new legs and ends when the search is over. `None` means "not now" (backing off).
pub trait LegSource<S>: Send {
    /// Starts a search for up to `wanted` more legs on the group's partition; `None` when
    /// backing off.
    fn start(&mut self, wanted: usize) -> Option<mpsc::Receiver<LegEvent<S>>>;
}

/// When to scale up: above `threshold` bytes per second (both directions), up to `max_legs`.
#[derive(Debug, Clone, Copy)]
pub struct ScalePolicy {
    /// The server's `scale_up_bytes_per_sec_threshold` from the bind reply.
    pub threshold_bytes_per_sec: u64,
    /// The most server connections per client connection: the server's
    /// `max_multiplexed_connections`, capped by the proxy.
    pub max_legs: usize,
}

/// Settings of one forwarding session.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Largest RPC record accepted from the client (RFC 5531 record marking); a larger one
    /// ends the session.
    pub max_record_size: usize,
    /// Close the client connection when calls are outstanding and no server record arrives
    /// for this long (`None`: wait forever, as AWS's efs-proxy).
    pub server_timeout: Option<Duration>,
}

/// Forwards records between `client` and one server connection until either ends, then
/// closes both. `server_pending` holds bytes already read from the server.
pub async fn forward<C, S>(
    client: C,
    server: S,
    server_pending: BytesMut,
    max_record_size: usize,
    stats: Arc<Stats>,
) -> ForwardEnd
where
    C: AsyncRead + AsyncWrite + Send,
    S: AsyncRead + AsyncWrite + Send,
{
    let leg = Leg::new(0, server, server_pending, max_record_size);
    let limits = SessionLimits {
        max_record_size,
        server_timeout: None,
    };
    Session::new(client, leg, limits, stats).run().await
}

/// An NFSv4.1+ COMPOUND call that does not start with SEQUENCE (RFC 8881 §2.10.3.1).
fn needs_bound_connection(record: &Record) -> bool {
    efs_rpc::nfs4::compound_head(record.message()).is_some_and(|head| head.needs_bound_connection())
}
