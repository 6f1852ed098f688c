//! The forwarding path with scale-up: `efs_proxy::internal::forward::Session` between one in-memory NFS
//! client and a group of up to four server connections, the first given at the start and the
//! others handed over by a scale-up search (with or without a back-off first), with or
//! without a server timeout. Every endpoint writes arbitrary bytes or valid calls, replies and
//! callbacks, reads or stalls, half-closes or vanishes. Checked on every run:
//!
//! * no panic; the session ends once the client closes, and closes every server connection;
//! * each server connection receives client records only, in the client's order; the client
//!   receives server records only, each connection's in its order;
//! * while the session runs and no server connection has failed, nothing is held back: every
//!   complete record sent so far has been delivered, the client's to exactly one connection;
//! * why the session ended agrees with the streams;
//! * bounded memory (documented worst case for this many connections, plus the call tables).
#![no_main]

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use efs_proxy::internal::forward::Stats;
use efs_proxy::internal::forward::{
    ForwardEnd, Leg, LegEvent, LegSource, ScalePolicy, Session, SessionLimits,
};
use efs_proxy_fuzz::peer::{Budget, IDLE, Peer, QUIET, READ_WAIT, RecordBatch, block_on_paused};
use efs_proxy_fuzz::{
    CountingAlloc, GroupInput, GroupOp, RefError, Reframed, generated_record_salted,
    is_subsequence, memory_baseline, memory_peak, reframe, split_records, untracked,
};
use libfuzzer_sys::fuzz_target;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio::time::timeout;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Hands over the prepared server connections when the session asks for more.
struct Source {
    legs: VecDeque<Leg<DuplexStream>>,
    backoff_first: bool,
    /// How many legs were handed over so far (they join in order).
    handed: Arc<AtomicUsize>,
}

impl LegSource<DuplexStream> for Source {
    fn start(&mut self, wanted: usize) -> Option<mpsc::Receiver<LegEvent<DuplexStream>>> {
        if self.legs.is_empty() {
            return None;
        }
        let (tx, rx) = mpsc::channel(8);
        if std::mem::take(&mut self.backoff_first) {
            let _ = tx.try_send(LegEvent::Backoff(Duration::from_secs(1)));
        }
        for _ in 0..wanted {
            match self.legs.pop_front() {
                Some(leg) => {
                    let _ = tx.try_send(LegEvent::Ready(Box::new(leg)));
                    self.handed.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            }
        }
        Some(rx)
    }
}

/// Endpoint 0 is the client, endpoint k the server peer of leg k-1.
struct World {
    peers: Vec<Peer>,
    pending: Vec<u8>,
    max: usize,
    /// Legs handed over by the scale-up search (besides the first).
    handed: Arc<AtomicUsize>,
}

impl World {
    fn client(&self) -> &Peer {
        &self.peers[0]
    }

    fn servers(&self) -> &[Peer] {
        &self.peers[1..]
    }

    /// What the server of leg `k` sent, pending bytes included for the first.
    fn server_stream(&self, k: usize) -> Vec<u8> {
        let mut s = if k == 0 {
            self.pending.clone()
        } else {
            Vec::new()
        };
        s.extend_from_slice(&self.peers[k + 1].sent);
        s
    }

    fn any_server_closed(&self) -> bool {
        self.servers().iter().any(Peer::closed)
    }

    /// The legs in the group: the first and those handed over.
    fn joined(&self) -> usize {
        1 + self.handed.load(Ordering::Relaxed)
    }
}

async fn quiesce<T>(world: &mut World, task: &tokio::task::JoinHandle<T>) {
    let mut quiet_rounds = 0;
    while quiet_rounds < 2 {
        // A connection handed over meanwhile joins the group at the session's next poll, and
        // its records flow from then on: not quiet yet (the first campaign's only finding,
        // findings/forward_group-server-record-held-back, was this race in the harness).
        let state = |w: &World| {
            let mut v: Vec<usize> = w.peers.iter().map(|p| p.received.len()).collect();
            v.push(w.joined());
            v
        };
        let before = state(world);
        for peer in &mut world.peers {
            peer.read(0, IDLE).await;
        }
        // Give the session and its timers (the scale-up tick) a turn, then look again: the
        // state compared last is the one the invariants below are checked against.
        tokio::time::sleep(QUIET).await;
        for peer in &mut world.peers {
            peer.read(0, IDLE).await;
        }
        let after = state(world);
        if before == after {
            quiet_rounds += 1;
        } else {
            quiet_rounds = 0;
        }
    }
    if task.is_finished() {
        return;
    }
    assert!(
        !world.client().closed(),
        "the session goes on after the client closed"
    );
    untracked(|| {
        let up = reframe(&world.client().sent, world.max, false);
        assert_eq!(
            up.end,
            Ok(()),
            "the session goes on after an invalid client stream"
        );
        if world.servers().iter().any(|p| p.closed() || p.eof) {
            // Records queued for a failed connection with no call in flight may be dropped.
            return;
        }
        let client_records = split_records(&up.wire);
        let mut delivered = 0;
        for server in world.servers() {
            delivered += split_records(&server.received).len();
        }
        assert_eq!(
            delivered,
            client_records.len(),
            "client records held back or duplicated"
        );
        let mut all_down = 0;
        for k in 0..world.joined() {
            let down = reframe(&world.server_stream(k), world.max, false);
            if down.end.is_err() {
                return; // that connection is about to fail
            }
            all_down += down.records;
        }
        assert_eq!(
            split_records(&world.client().received).len(),
            all_down,
            "server records held back"
        );
    });
}

fn check(world: &World, up: &Reframed, downs: &[Reframed], end: &ForwardEnd, timeout_set: bool) {
    let client_records = split_records(&up.wire);
    // Each connection got client records, in order, and together no more than were sent.
    let mut counts: HashMap<&[u8], isize> = HashMap::new();
    for r in &client_records {
        *counts.entry(r).or_default() += 1;
    }
    for (k, server) in world.servers().iter().enumerate() {
        let got = split_records(&server.received);
        assert!(
            is_subsequence(&got, &client_records),
            "server {k} received records out of order or not from the client"
        );
        for r in got {
            let c = counts.entry(r).or_default();
            *c -= 1;
            assert!(*c >= 0, "a client record was delivered twice");
        }
    }
    // The client got server records only, each connection's in order (judged on records
    // that only one connection sent, once).
    let client_got = split_records(&world.client().received);
    let mut owner: HashMap<&[u8], Option<usize>> = HashMap::new();
    let mut counts: HashMap<&[u8], isize> = HashMap::new();
    for (k, down) in downs.iter().enumerate() {
        for r in split_records(&down.wire) {
            *counts.entry(r).or_default() += 1;
            owner.entry(r).and_modify(|o| *o = None).or_insert(Some(k));
        }
    }
    for r in &client_got {
        let c = counts.entry(r).or_default();
        *c -= 1;
        assert!(
            *c >= 0,
            "the client received a record no server sent (or twice)"
        );
    }
    for (k, down) in downs.iter().enumerate() {
        let mine: Vec<&[u8]> = split_records(&down.wire)
            .into_iter()
            .filter(|r| owner.get(r) == Some(&Some(k)))
            .collect();
        let seen: Vec<&[u8]> = client_got
            .iter()
            .copied()
            .filter(|r| owner.get(r) == Some(&Some(k)))
            .collect();
        assert!(
            is_subsequence(&seen, &mine),
            "records of server {k} reached the client out of order"
        );
    }

    let client = world.client();
    let decoding = |e: &efs_rpc::RecordError| RefError::of(e);
    match end {
        ForwardEnd::ClientClosed => {
            assert!(client.closed());
            assert_eq!(up.end, Ok(()));
        }
        ForwardEnd::ClientError(e) => match decoding(e) {
            Some(e) => assert_eq!(up.end, Err(e)),
            None => assert!(client.dropped, "I/O error towards a live client: {e}"),
        },
        ForwardEnd::ServerClosed => {
            assert!(world.any_server_closed(), "no server closed");
        }
        ForwardEnd::ServerError(e) => match decoding(e) {
            Some(e) => assert!(
                downs.iter().any(|d| d.end == Err(e.clone())),
                "no server stream has {e:?}"
            ),
            None => assert!(
                world.servers().iter().any(|p| p.dropped),
                "I/O error towards live servers: {e}"
            ),
        },
        ForwardEnd::ServerTimeout(_) => assert!(timeout_set, "server timeout without a limit"),
    }
}

fn run(input: &GroupInput) {
    block_on_paused(async {
        let max = input.max_record_size;
        let (mut world, session) = setup(input);
        let mut record = untracked(|| Vec::with_capacity(max + 4 * 256 + 64));

        let base = memory_baseline();
        let task = tokio::spawn(session.run());
        let mut budget = Budget::default();
        for (endpoint, op) in &input.ops {
            apply(
                *endpoint,
                op,
                input,
                &mut world,
                &task,
                &mut budget,
                &mut record,
            )
            .await;
        }
        quiesce(&mut world, &task).await;
        let end = client_leaves(&mut world, task).await;

        let peak = memory_peak() - base;
        if std::env::var_os("FUZZ_FORWARD_VERBOSE").is_some() {
            let got: Vec<usize> = world.peers.iter().map(|p| p.received.len()).collect();
            let sent: Vec<usize> = world.peers.iter().map(|p| p.sent.len()).collect();
            eprintln!(
                "end={end:?} joined={} peak={peak} sent={sent:?} received={got:?}",
                world.joined()
            );
        }
        let (up, downs) = untracked(|| {
            let up = reframe(&world.client().sent, max, world.client().closed());
            let downs: Vec<Reframed> = (0..input.legs)
                .map(|k| reframe(&world.server_stream(k), max, world.peers[k + 1].closed()))
                .collect();
            (up, downs)
        });
        let records = up.records + downs.iter().map(|d| d.records).sum::<usize>();
        let bound = 2 * efs_proxy::internal::forward::worst_case_memory(max, input.legs)
            + (input.legs + 1) * (2 * 8192 + 2 * (max + 4))
            + 64 * records.min(2 * 65_536)
            + 4 * (input.legs + 1) * 2 * input.duplex_capacity
            + (512 << 10);
        assert!(
            peak <= bound as isize,
            "the session held {peak} bytes (bound {bound})"
        );
        untracked(|| {
            check(&world, &up, &downs, &end, input.server_timeout_ms.is_some());
            drop((world, record, up, downs));
        });
    });
}

/// The client's and servers' pipes, and the session over them with its first leg; the other
/// legs wait in the scale-up source.
fn setup(input: &GroupInput) -> (World, Session<DuplexStream, DuplexStream>) {
    let max = input.max_record_size;
    let (client_end, proxy_client) = tokio::io::duplex(input.duplex_capacity);
    let mut peers = vec![Peer::new(client_end)];
    let mut legs = VecDeque::new();
    for k in 0..input.legs {
        let (server_end, proxy_server) = tokio::io::duplex(input.duplex_capacity);
        peers.push(Peer::new(server_end));
        let pending = if k == 0 {
            BytesMut::from(&input.pending[..])
        } else {
            BytesMut::new()
        };
        legs.push_back(Leg::new(k, proxy_server, pending, max));
    }
    let handed = Arc::new(AtomicUsize::new(0));
    let world = World {
        peers,
        pending: input.pending.clone(),
        max,
        handed: handed.clone(),
    };
    let first = legs.pop_front().unwrap();
    let limits = SessionLimits {
        max_record_size: max,
        server_timeout: input.server_timeout_ms.map(Duration::from_millis),
    };
    let source = Source {
        legs,
        backoff_first: input.backoff_first,
        handed,
    };
    let policy = ScalePolicy {
        threshold_bytes_per_sec: 1,
        max_legs: input.legs,
    };
    let session = Session::new(proxy_client, first, limits, Arc::new(Stats::default()))
        .with_scaling(policy, Box::new(source));
    (world, session)
}

/// Plays one operation of the input at `endpoint` (0: the client, k: the server of leg k-1).
async fn apply<T>(
    endpoint: usize,
    op: &GroupOp,
    input: &GroupInput,
    world: &mut World,
    task: &tokio::task::JoinHandle<T>,
    budget: &mut Budget,
    record: &mut Vec<u8>,
) {
    let peer = &mut world.peers[endpoint];
    match op {
        GroupOp::Write(bytes) => {
            peer.write(bytes).await;
        }
        GroupOp::WriteRecords {
            count,
            len,
            fragments,
            flip,
        } => {
            let batch = RecordBatch {
                count: *count,
                len: *len,
                fragments: *fragments,
            };
            // Calls from the client, replies from servers; flipped: callbacks from servers
            // and the client's replies to them.
            let msg_type = u32::from((endpoint != 0) != *flip);
            let salt = endpoint as u8;
            let make = |index, len, fragments, out: &mut Vec<u8>| {
                generated_record_salted(index, msg_type, salt, len, fragments, out)
            };
            let (max, capacity) = (input.max_record_size, input.duplex_capacity);
            batch.write(peer, max, capacity, budget, record, make).await;
        }
        GroupOp::Read(n) => peer.read(usize::from(*n), READ_WAIT).await,
        GroupOp::ShutdownWrite => peer.shutdown().await,
        GroupOp::Drop => peer.drop_stream(),
        GroupOp::Sleep(ms) => tokio::time::sleep(Duration::from_millis(u64::from(*ms))).await,
        GroupOp::Quiesce => quiesce(world, task).await,
    }
}

/// The client leaves: the session must end and close every server connection. Why it ended.
async fn client_leaves(world: &mut World, task: tokio::task::JoinHandle<ForwardEnd>) -> ForwardEnd {
    world.peers[0].shutdown().await;
    let finish = async {
        for peer in &mut world.peers {
            peer.drain().await;
        }
    };
    let end = timeout(Duration::from_secs(600), async {
        let (end, ()) = tokio::join!(task, finish);
        end
    });
    match end.await {
        Ok(Ok(end)) => end,
        Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
        Err(_) => panic!("the session did not end, or left a connection open"),
    }
}

fuzz_target!(|data: &[u8]| {
    run(&GroupInput::parse(data));
});
