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

pub mod writer;

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use efs_rpc::{HeaderPeek, MessageType, Record, RecordCodec, RecordError};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};
use tokio_util::codec::{Decoder, FramedRead};
use tracing::{debug, info, warn};

use crate::forward::writer::{Hold, RecordWriter};
use crate::stats::{Direction, Stats};

/// Bytes a writer may queue before the other side stops being read.
pub const WRITE_QUEUE_LIMIT: usize = 256 * 1024;
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

/// One server connection of a group.
pub struct Leg<S> {
    id: usize,
    /// Records that arrived with the bind reply, before forwarding started: handed on first.
    /// (`FramedRead` decodes its buffer only after a read, so bytes put there would wait for
    /// the server's next message: a callback right behind the bind reply would be stuck.)
    early: VecDeque<Record>,
    /// A record-marking error in those early bytes, reported after the early records.
    early_error: Option<RecordError>,
    reader: FramedRead<ReadHalf<S>, RecordCodec>,
    writer: RecordWriter<WriteHalf<S>>,
    /// Calls sent on this leg and not answered yet, and their bytes.
    in_flight: usize,
    in_flight_bytes: usize,
}

impl<S: AsyncRead + AsyncWrite> Leg<S> {
    /// Wraps a connected (and bound) server stream. `pending` holds bytes already read from
    /// it (after the bind reply).
    pub fn new(id: usize, stream: S, mut pending: BytesMut, max_record_size: usize) -> Self {
        let (read, write) = tokio::io::split(stream);
        let mut codec = RecordCodec::new(max_record_size);
        let mut early = VecDeque::new();
        let mut early_error = None;
        loop {
            match codec.decode(&mut pending) {
                Ok(Some(record)) => early.push_back(record),
                Ok(None) => break,
                Err(e) => {
                    early_error = Some(e);
                    pending.clear();
                    break;
                }
            }
        }
        // What is left is part of a record: the rest must come from the server anyway. The
        // codec keeps the fragments already assembled.
        let mut reader = FramedRead::new(read, codec);
        reader.read_buffer_mut().extend_from_slice(&pending);
        Leg {
            id,
            early,
            early_error,
            reader,
            writer: RecordWriter::new(write, WRITE_QUEUE_LIMIT, Hold::Copy),
            in_flight: 0,
            in_flight_bytes: 0,
        }
    }

    pub fn id(&self) -> usize {
        self.id
    }

    /// The next record from the server: the early ones first, then the socket's.
    fn poll_next_record(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Record, RecordError>>> {
        if let Some(record) = self.early.pop_front() {
            return Poll::Ready(Some(Ok(record)));
        }
        if let Some(e) = self.early_error.take() {
            return Poll::Ready(Some(Err(e)));
        }
        self.reader.poll_next_unpin(cx)
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
    fn start(&mut self, wanted: usize) -> Option<mpsc::Receiver<LegEvent<S>>>;
}

/// When to scale up: above `threshold` bytes per second (both directions), up to `max_legs`.
#[derive(Debug, Clone, Copy)]
pub struct ScalePolicy {
    pub threshold_bytes_per_sec: u64,
    pub max_legs: usize,
}

/// Settings of one forwarding session.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
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

/// A client connection and its group of server connections.
pub struct Session<C, S> {
    client_reader: FramedRead<ReadHalf<C>, RecordCodec>,
    client_writer: RecordWriter<WriteHalf<C>>,
    legs: Vec<Leg<S>>,
    /// A client record read but not yet queued, and the leg it goes to.
    staged: Option<(Record, usize)>,
    /// Client records read before the session started (the first records of the connection).
    client_early: VecDeque<Record>,
    /// Client calls in flight: xid → (leg id, wire bytes).
    calls: HashMap<u32, (usize, usize)>,
    /// Server callbacks awaiting the client's reply: xid → leg id.
    callbacks: HashMap<u32, usize>,
    stats: Arc<Stats>,
    limits: SessionLimits,
    /// Last time a server record arrived, or the first call went out on an idle session.
    server_progress: Instant,
    timeout: Option<Pin<Box<Sleep>>>,
    scale: Option<Scaling<S>>,
    next_reader: usize,
    next_writer: usize,
}

/// Scale-up state of a session.
struct Scaling<S> {
    policy: ScalePolicy,
    source: Box<dyn LegSource<S>>,
    search: Option<mpsc::Receiver<LegEvent<S>>>,
    tick: tokio::time::Interval,
    moved: u64,
    samples: [u64; RATE_WINDOW],
    sample: usize,
}

impl<C, S> Session<C, S>
where
    C: AsyncRead + AsyncWrite + Send,
    S: AsyncRead + AsyncWrite + Send,
{
    /// A session over `client` and its first server connection.
    pub fn new(client: C, first: Leg<S>, limits: SessionLimits, stats: Arc<Stats>) -> Self {
        let (read, write) = tokio::io::split(client);
        Session {
            client_reader: FramedRead::new(read, RecordCodec::new(limits.max_record_size)),
            client_writer: RecordWriter::new(write, WRITE_QUEUE_LIMIT, Hold::InPlace),
            legs: vec![first],
            staged: None,
            client_early: VecDeque::new(),
            calls: HashMap::new(),
            callbacks: HashMap::new(),
            stats,
            limits,
            server_progress: Instant::now(),
            timeout: None,
            scale: None,
            next_reader: 0,
            next_writer: 0,
        }
    }

    /// Starts with client records already read (and the bytes of the next, incomplete one).
    pub fn with_client_records(mut self, records: VecDeque<Record>, rest: BytesMut) -> Self {
        self.client_early = records;
        self.client_reader
            .read_buffer_mut()
            .extend_from_slice(&rest);
        self
    }

    /// Lets the session open more connections through `source` under `policy`.
    pub fn with_scaling(mut self, policy: ScalePolicy, source: Box<dyn LegSource<S>>) -> Self {
        if policy.max_legs > 1 && policy.threshold_bytes_per_sec > 0 {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            self.scale = Some(Scaling {
                policy,
                source,
                search: None,
                tick,
                moved: 0,
                samples: [0; RATE_WINDOW],
                sample: 0,
            });
        }
        self
    }

    /// Forwards until the client or the group ends, then closes every connection.
    pub async fn run(mut self) -> ForwardEnd {
        let end = poll_fn(|cx| self.poll_forward(cx)).await;
        let close = async {
            let _ = poll_fn(|cx| self.client_writer.poll_shutdown(cx)).await;
            for leg in &mut self.legs {
                let _ = poll_fn(|cx| leg.writer.poll_shutdown(cx)).await;
            }
        };
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, close).await;
        end
    }

    fn poll_forward(&mut self, cx: &mut Context<'_>) -> Poll<ForwardEnd> {
        self.poll_scaling(cx);
        if let Some(end) = self.client_to_servers(cx) {
            return Poll::Ready(end);
        }
        if let Some(end) = self.servers_to_client(cx) {
            return Poll::Ready(end);
        }
        if let Some(end) = self.poll_server_timeout(cx) {
            return Poll::Ready(end);
        }
        Poll::Pending
    }

    /// Reads client records and queues each on its leg; flushes the legs.
    fn client_to_servers(&mut self, cx: &mut Context<'_>) -> Option<ForwardEnd> {
        let mut moved = 0;
        while moved < RECORDS_PER_POLL {
            if self.staged.is_none()
                && let Some(record) = self.client_early.pop_front()
            {
                let leg = self.route_client_record(&record);
                self.staged = Some((record, leg));
            }
            if self.staged.is_none() {
                match self.client_reader.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(record))) => {
                        let leg = self.route_client_record(&record);
                        self.staged = Some((record, leg));
                    }
                    Poll::Ready(Some(Err(e))) => return Some(ForwardEnd::ClientError(e)),
                    Poll::Ready(None) => return Some(ForwardEnd::ClientClosed),
                    Poll::Pending => break,
                }
            }
            let Some((_, index)) = &self.staged else {
                break;
            };
            let index = *index;
            match self.legs[index].writer.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    if let Some((record, index)) = self.staged.take() {
                        self.send_to_leg(record, index);
                        moved += 1;
                    }
                }
                Poll::Ready(Err(e)) => {
                    if let Some(end) = self.leg_failed(index, ForwardEnd::ServerError(e.into())) {
                        return Some(end);
                    }
                }
                Poll::Pending => break,
            }
        }
        if moved == RECORDS_PER_POLL {
            // More may be ready: come back after other tasks had a turn.
            cx.waker().wake_by_ref();
        }
        let mut index = 0;
        while index < self.legs.len() {
            if self.legs[index].writer.needs_flush()
                && let Poll::Ready(Err(e)) = self.legs[index].writer.poll_flush(cx)
            {
                if let Some(end) = self.leg_failed(index, ForwardEnd::ServerError(e.into())) {
                    return Some(end);
                }
                continue;
            }
            index += 1;
        }
        None
    }

    /// Reads server records from every leg (taking turns) and queues them for the client.
    fn servers_to_client(&mut self, cx: &mut Context<'_>) -> Option<ForwardEnd> {
        let mut moved = 0;
        let mut turn = 0;
        while turn < self.legs.len() && moved < RECORDS_PER_POLL {
            match self.client_writer.poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Some(ForwardEnd::ClientError(e.into())),
                Poll::Pending => break,
            }
            let index = (self.next_reader + turn) % self.legs.len();
            match self.legs[index].poll_next_record(cx) {
                Poll::Ready(Some(Ok(record))) => {
                    self.receive_from_leg(&record, index);
                    self.client_writer.push(record.into_wire());
                    moved += 1;
                }
                Poll::Ready(Some(Err(e))) => {
                    if let Some(end) = self.leg_failed(index, ForwardEnd::ServerError(e)) {
                        return Some(end);
                    }
                }
                Poll::Ready(None) => {
                    if let Some(end) = self.leg_failed(index, ForwardEnd::ServerClosed) {
                        return Some(end);
                    }
                }
                Poll::Pending => turn += 1,
            }
        }
        if moved == RECORDS_PER_POLL {
            // More may be ready: come back after other tasks had a turn.
            cx.waker().wake_by_ref();
        }
        self.next_reader = self.next_reader.wrapping_add(1);
        if self.client_writer.needs_flush()
            && let Poll::Ready(Err(e)) = self.client_writer.poll_flush(cx)
        {
            return Some(ForwardEnd::ClientError(e.into()));
        }
        None
    }

    /// Picks the leg for a client record and books a call in flight.
    fn route_client_record(&mut self, record: &Record) -> usize {
        let peek = record.peek();
        if let Some(HeaderPeek {
            xid,
            kind: MessageType::Reply,
        }) = peek
        {
            // A reply to a server callback goes back where the callback came from.
            let leg_id = self.callbacks.remove(&xid);
            return leg_id.and_then(|id| self.index_of(id)).unwrap_or(0);
        }
        let index = if self.legs.len() > 1 && needs_bound_connection(record) {
            // Session management (no SEQUENCE first) goes where the client's session was
            // created and is bound: the connection that carried its first records.
            self.index_of(0).unwrap_or(0)
        } else {
            self.least_loaded()
        };
        if let Some(HeaderPeek {
            xid,
            kind: MessageType::Call,
        }) = peek
        {
            if let Some((old_leg, old_bytes)) = self.calls.remove(&xid) {
                // A retransmission: forget the earlier copy.
                if let Some(old) = self.index_of(old_leg) {
                    unbook(&mut self.legs[old], old_bytes);
                }
            }
            if self.calls.len() < MAX_TRACKED_CALLS {
                if self.calls.is_empty() {
                    self.server_progress = Instant::now();
                }
                let bytes = record.wire().len();
                self.calls.insert(xid, (self.legs[index].id, bytes));
                let leg = &mut self.legs[index];
                leg.in_flight += 1;
                leg.in_flight_bytes += bytes;
            }
        }
        index
    }

    fn send_to_leg(&mut self, record: Record, index: usize) {
        let len = record.wire().len();
        self.stats.record(Direction::ToServer, len);
        if let Some(scale) = &mut self.scale {
            scale.moved += len as u64;
        }
        self.legs[index].writer.push(record.into_wire());
    }

    /// Books a server record: a reply completes a call, a call is a callback to route back.
    fn receive_from_leg(&mut self, record: &Record, index: usize) {
        let len = record.wire().len();
        self.stats.record(Direction::ToClient, len);
        if let Some(scale) = &mut self.scale {
            scale.moved += len as u64;
        }
        self.server_progress = Instant::now();
        match record.peek() {
            Some(HeaderPeek {
                xid,
                kind: MessageType::Reply,
            }) => {
                if let Some((leg_id, bytes)) = self.calls.remove(&xid)
                    && let Some(i) = self.index_of(leg_id)
                {
                    unbook(&mut self.legs[i], bytes);
                }
            }
            Some(HeaderPeek {
                xid,
                kind: MessageType::Call,
            }) if self.callbacks.len() < MAX_TRACKED_CALLS => {
                self.callbacks.insert(xid, self.legs[index].id);
            }
            _ => {}
        }
    }

    /// The leg with the fewest bytes in flight; ties are broken round robin, so calls made
    /// one at a time still spread over the group.
    fn least_loaded(&mut self) -> usize {
        let n = self.legs.len();
        self.next_writer = self.next_writer.wrapping_add(1);
        (0..n)
            .map(|turn| (self.next_writer + turn) % n)
            .min_by_key(|&i| self.legs[i].in_flight_bytes)
            .unwrap_or(0)
    }

    fn index_of(&self, leg_id: usize) -> Option<usize> {
        self.legs.iter().position(|leg| leg.id == leg_id)
    }

    /// A leg failed. It is dropped from the group when others remain and it carried no call
    /// in flight: nothing is lost, the other legs go on. Otherwise the whole client connection
    /// ends: replies to the calls in flight on it will never come, and the NFS client would
    /// otherwise wait its full timeout (timeo=600: 60 s) before retransmitting; on a fresh
    /// connection it replays at once (NFSv4.1 sessions are designed for this).
    fn leg_failed(&mut self, index: usize, end: ForwardEnd) -> Option<ForwardEnd> {
        let leg = &self.legs[index];
        let staged_here = matches!(self.staged, Some((_, i)) if i == index);
        if self.legs.len() == 1 || leg.in_flight > 0 || staged_here {
            if self.legs.len() > 1 {
                warn!(
                    leg = leg.id,
                    in_flight = leg.in_flight,
                    "a connection of the group failed with calls in flight ({end}); closing the \
                     client connection so the NFS client reconnects and retransmits"
                );
            }
            return Some(end);
        }
        let id = leg.id;
        warn!(
            leg = id,
            "a connection of the group failed with no call in flight ({end}); continuing on \
             {} connections",
            self.legs.len() - 1
        );
        self.legs.remove(index);
        self.callbacks.retain(|_, leg| *leg != id);
        if let Some((_, staged)) = &mut self.staged
            && *staged > index
        {
            *staged -= 1;
        }
        None
    }

    /// Ends the session when calls wait longer than the server timeout for any answer.
    fn poll_server_timeout(&mut self, cx: &mut Context<'_>) -> Option<ForwardEnd> {
        let limit = self.limits.server_timeout?;
        if self.calls.is_empty() {
            self.timeout = None;
            return None;
        }
        // A limit too large for the clock (years) means no deadline, not an overflow panic.
        let Some(deadline) = self.server_progress.checked_add(limit) else {
            self.timeout = None;
            return None;
        };
        let sleep = self
            .timeout
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Some(ForwardEnd::ServerTimeout(limit)),
            Poll::Pending => None,
        }
    }

    /// Measures throughput, starts a scale-up search, and adopts the legs it finds.
    fn poll_scaling(&mut self, cx: &mut Context<'_>) {
        let Some(scale) = &mut self.scale else {
            return;
        };
        if let Some(search) = &mut scale.search {
            loop {
                match search.poll_recv(cx) {
                    Poll::Ready(Some(LegEvent::Ready(leg))) => {
                        if self.legs.len() < scale.policy.max_legs {
                            info!(
                                leg = leg.id,
                                "scale-up: added connection {}",
                                self.legs.len() + 1
                            );
                            self.legs.push(*leg);
                        }
                    }
                    Poll::Ready(Some(LegEvent::Backoff(wait))) => {
                        info!("scale-up: backing off for {wait:?}");
                    }
                    Poll::Ready(None) => {
                        debug!("scale-up search over with {} connections", self.legs.len());
                        scale.search = None;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
        while scale.tick.poll_tick(cx).is_ready() {
            scale.samples[scale.sample % RATE_WINDOW] = std::mem::take(&mut scale.moved);
            scale.sample += 1;
            let rate = scale.samples.iter().sum::<u64>() / RATE_WINDOW as u64;
            let wanted = scale.policy.max_legs.saturating_sub(self.legs.len());
            if scale.sample >= RATE_WINDOW
                && rate >= scale.policy.threshold_bytes_per_sec
                && wanted > 0
                && scale.search.is_none()
            {
                scale.search = scale.source.start(wanted);
                if scale.search.is_some() {
                    info!(
                        "scale-up: {rate} B/s over {RATE_WINDOW} s is above {} B/s; opening \
                         {wanted} more connections",
                        scale.policy.threshold_bytes_per_sec
                    );
                    cx.waker().wake_by_ref();
                }
            }
        }
    }
}

fn unbook<S>(leg: &mut Leg<S>, bytes: usize) {
    leg.in_flight = leg.in_flight.saturating_sub(1);
    leg.in_flight_bytes = leg.in_flight_bytes.saturating_sub(bytes);
}

/// An NFSv4.1+ COMPOUND call that does not start with SEQUENCE (RFC 8881 §2.10.3.1).
fn needs_bound_connection(record: &Record) -> bool {
    efs_rpc::nfs4::compound_head(record.message()).is_some_and(|head| head.needs_bound_connection())
}
