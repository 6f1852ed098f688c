//! A client connection and its group of server connections, driven by one task: the poll
//! loop that moves records both ways, routes calls and replies, watches for a dead server and
//! scales the group up.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use efs_rpc::{HeaderPeek, MessageType, Record, RecordCodec};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};
use tokio_util::codec::FramedRead;
use tracing::{debug, info, warn};

use super::leg::{Leg, unbook};
use super::writer::{Hold, RecordWriter};
use super::{
    ForwardEnd, LegEvent, LegSource, MAX_TRACKED_CALLS, RATE_WINDOW, RECORDS_PER_POLL,
    SHUTDOWN_GRACE, ScalePolicy, SessionLimits, WRITE_QUEUE_LIMIT, needs_bound_connection,
};
use crate::stats::{Direction, Stats};

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
