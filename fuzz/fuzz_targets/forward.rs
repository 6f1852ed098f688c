//! The forwarding path as a whole: `efs_proxy::internal::forward::forward` between an in-memory NFS
//! client and mount target (tokio duplex pipes) that write arbitrary bytes and valid records
//! both ways, read or stall, half-close or vanish, in any order. Checked on every run:
//!
//! * no panic, and forwarding ends once a side closes, closing the other side too;
//! * each side receives a byte prefix of what the reference decoder makes of the other side's
//!   stream (records re-framed as single fragments), all of it when the sender closed cleanly;
//! * why forwarding ended agrees with the streams (a decoding error only for an invalid
//!   stream, the same error as the reference decoder's; an I/O error only for a vanished peer);
//! * bounded memory: the bytes allocated while the forwarder runs stay below a few records'
//!   worth plus the pipe buffers, however much the peers send while the other side stalls.
//!
//! The clock is paused, so timeouts (a stalled write, the forwarder's 2 s shutdown grace)
//! cost no real time.
#![no_main]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use efs_proxy::internal::forward::Stats;
use efs_proxy::internal::forward::{ForwardEnd, forward};
use efs_proxy_fuzz::peer::{Budget, IDLE, Peer, QUIET, READ_WAIT, RecordBatch, block_on_paused};
use efs_proxy_fuzz::{
    CountingAlloc, ForwardInput, Op, RefError, Reframed, Side, generated_record, memory_baseline,
    memory_peak, reframe, untracked,
};
use libfuzzer_sys::fuzz_target;
use tokio::time::timeout;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn run(input: &ForwardInput) {
    block_on_paused(async {
        let (client_end, proxy_client) = tokio::io::duplex(input.duplex_capacity);
        let (server_end, proxy_server) = tokio::io::duplex(input.duplex_capacity);
        let mut client = Peer::new(client_end);
        let mut server = Peer::new(server_end);
        let stats = Arc::new(Stats::default());
        let pending = BytesMut::from(&input.pending[..]);
        let mut record = untracked(|| Vec::with_capacity(input.max_record_size + 4 * 256 + 64));

        let base = memory_baseline();
        let task = tokio::spawn(forward(
            proxy_client,
            proxy_server,
            pending,
            input.max_record_size,
            stats.clone(),
        ));
        let mut budget = Budget::default();
        for op in &input.ops {
            let peers = (&mut client, &mut server);
            apply(op, input, peers, &task, &mut budget, &mut record).await;
        }
        quiesce(input, &mut client, &mut server, &task).await;
        let end = close_and_wait(input.final_close, &mut client, &mut server, task).await;

        let peak = memory_peak() - base;
        let (up, down) = untracked(|| {
            let mut from_server = input.pending.clone();
            from_server.extend_from_slice(&server.sent);
            let max = input.max_record_size;
            (
                reframe(&client.sent, max, client.closed()),
                reframe(&from_server, max, server.closed()),
            )
        });
        let bound = memory_bound(input, up.records + down.records);
        if std::env::var_os("FUZZ_FORWARD_VERBOSE").is_some() {
            eprintln!(
                "end={end} peak={peak} bound={bound} sent={}/{} received={}/{}",
                client.sent.len(),
                server.sent.len(),
                server.received.len(),
                client.received.len()
            );
        }
        assert!(
            peak <= bound as isize,
            "the forwarder held {peak} bytes (bound {bound}); sent {} + {} bytes",
            client.sent.len(),
            server.sent.len()
        );

        untracked(|| check(&client, &server, &up, &down, &end, &stats));
        untracked(|| drop((client, server, record, up, down)));
    });
}

/// Plays one operation of the input.
async fn apply<T>(
    op: &Op,
    input: &ForwardInput,
    (client, server): (&mut Peer, &mut Peer),
    task: &tokio::task::JoinHandle<T>,
    budget: &mut Budget,
    record: &mut Vec<u8>,
) {
    match op {
        Op::Write(side, bytes) => {
            pick(*side, client, server).write(bytes).await;
        }
        Op::WriteRecords {
            side,
            count,
            len,
            fragments,
        } => {
            let batch = RecordBatch {
                count: *count,
                len: *len,
                fragments: *fragments,
            };
            // The client sends calls, the server replies with the same xids.
            let msg_type = u32::from(*side == Side::Server);
            let make = |index, len, fragments, out: &mut Vec<u8>| {
                generated_record(index, msg_type, len, fragments, out)
            };
            let (max, capacity) = (input.max_record_size, input.duplex_capacity);
            batch
                .write(
                    pick(*side, client, server),
                    max,
                    capacity,
                    budget,
                    record,
                    make,
                )
                .await;
        }
        Op::Read(side, n) => {
            pick(*side, client, server)
                .read(usize::from(*n), READ_WAIT)
                .await
        }
        Op::ShutdownWrite(side) => pick(*side, client, server).shutdown().await,
        Op::Drop(side) => pick(*side, client, server).drop_stream(),
        Op::Sleep(ms) => tokio::time::sleep(Duration::from_millis(u64::from(*ms))).await,
        Op::Quiesce => quiesce(input, client, server, task).await,
    }
}

/// The peer playing `side`.
fn pick<'a>(side: Side, client: &'a mut Peer, server: &'a mut Peer) -> &'a mut Peer {
    match side {
        Side::Client => client,
        Side::Server => server,
    }
}

/// One side closes; forwarding must end and close the other side. Why it ended.
async fn close_and_wait(
    closing: Side,
    client: &mut Peer,
    server: &mut Peer,
    task: tokio::task::JoinHandle<ForwardEnd>,
) -> ForwardEnd {
    match closing {
        Side::Client => client.shutdown().await,
        Side::Server => server.shutdown().await,
    }
    let finish = async {
        tokio::join!(client.drain(), server.drain());
    };
    if timeout(Duration::from_secs(600), finish).await.is_err() {
        panic!("a side was never closed after {closing:?} closed");
    }
    match timeout(Duration::from_secs(600), task).await {
        Ok(Ok(end)) => end,
        Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
        Err(_) => panic!("forwarding did not end after both sides closed"),
    }
}

/// Both sides read until nothing more arrives for a while (virtual time: the forwarder is idle
/// by then). If forwarding still runs, nothing may wait inside it: every complete record sent
/// so far has been delivered, and neither stream is invalid.
async fn quiesce<T>(
    input: &ForwardInput,
    client: &mut Peer,
    server: &mut Peer,
    task: &tokio::task::JoinHandle<T>,
) {
    // Read while anything arrives (a read waits until the runtime is idle), then stay quiet
    // for a while and check once more.
    let mut quiet_rounds = 0;
    while quiet_rounds < 2 {
        let before = (client.received.len(), server.received.len());
        client.read(0, IDLE).await;
        server.read(0, IDLE).await;
        if (client.received.len(), server.received.len()) == before {
            quiet_rounds += 1;
            tokio::time::sleep(QUIET).await;
        } else {
            quiet_rounds = 0;
        }
    }
    if task.is_finished() {
        return;
    }
    assert!(
        !client.closed() && !server.closed(),
        "forwarding goes on after a side closed (client closed: {}, server closed: {})",
        client.closed(),
        server.closed()
    );
    untracked(|| {
        let max = input.max_record_size;
        let up = reframe(&client.sent, max, false);
        let mut from_server = input.pending.clone();
        from_server.extend_from_slice(&server.sent);
        let down = reframe(&from_server, max, false);
        assert_eq!(
            up.end,
            Ok(()),
            "forwarding goes on after an invalid client stream"
        );
        assert!(
            server.received == up.wire,
            "complete client records held back: {} of {} bytes delivered",
            server.received.len(),
            up.wire.len()
        );
        assert_eq!(
            down.end,
            Ok(()),
            "forwarding goes on after an invalid server stream"
        );
        assert!(
            client.received == down.wire,
            "complete server records held back: {} of {} bytes delivered ({} pending, {} sent)",
            client.received.len(),
            down.wire.len(),
            input.pending.len(),
            server.sent.len()
        );
    });
}

/// What the forwarder may hold at most: twice the documented worst case (buffers grow by
/// doubling; the codec's reassembly buffer and `FramedRead`'s 8 KiB initial buffers come on
/// top), the call-tracking tables (at most 65 536 entries each, about 64 bytes an entry with
/// the hash table's growth), the four pipe buffers, and 512 KiB for the runtime.
fn memory_bound(input: &ForwardInput, records: usize) -> usize {
    let max = input.max_record_size;
    let sockets = 2;
    2 * efs_proxy::internal::forward::worst_case_memory(max, 1)
        + sockets * (2 * 8192 + 2 * (max + 4))
        + 64 * records.min(2 * 65_536)
        + 8 * input.duplex_capacity
        + (512 << 10)
}

/// The oracle: what each side received against the reference decoding of what the other sent.
fn check(
    client: &Peer,
    server: &Peer,
    up: &Reframed,
    down: &Reframed,
    end: &ForwardEnd,
    stats: &Stats,
) {
    assert!(
        up.wire.starts_with(&server.received),
        "the server received bytes the client did not send as records"
    );
    assert!(
        down.wire.starts_with(&client.received),
        "the client received bytes the server did not send as records"
    );
    let to_server = stats.bytes_to_server.load(Ordering::Relaxed) as usize;
    let to_client = stats.bytes_to_client.load(Ordering::Relaxed) as usize;
    assert!(server.received.len() <= to_server && to_server <= up.wire.len());
    assert!(client.received.len() <= to_client && to_client <= down.wire.len());

    let decoding = |e: &efs_rpc::RecordError| RefError::of(e);
    match end {
        // A clean end: the closing side's stream was whole. (What was still queued for the
        // other side is flushed within the forwarder's shutdown grace, so only a prefix is
        // promised; `quiesce` checks that nothing is held back while forwarding runs.)
        ForwardEnd::ClientClosed => {
            assert!(client.closed());
            assert_eq!(up.end, Ok(()), "clean close of an invalid client stream");
        }
        ForwardEnd::ServerClosed => {
            assert!(server.closed());
            assert_eq!(down.end, Ok(()), "clean close of an invalid server stream");
        }
        ForwardEnd::ClientError(e) => match decoding(e) {
            Some(e) => assert_eq!(up.end, Err(e)),
            None => assert!(client.dropped, "I/O error towards a live client: {e}"),
        },
        ForwardEnd::ServerError(e) => match decoding(e) {
            Some(e) => assert_eq!(down.end, Err(e)),
            None => assert!(server.dropped, "I/O error towards a live server: {e}"),
        },
        ForwardEnd::ServerTimeout(d) => panic!("server timeout ({d:?}) without a limit set"),
    }
}

fuzz_target!(|data: &[u8]| {
    let input = ForwardInput::parse(data);
    run(&input);
});
