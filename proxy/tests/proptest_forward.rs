//! Property test of the forwarding path: whatever records the client and the server send (in
//! any fragmentation, written in any chunk sizes through pipes of any capacity, with bytes
//! already read from the server before forwarding started), each side receives exactly the
//! other side's records, re-framed as single fragments and in order; when the client closes,
//! the server sees the end too. `fuzz/` drives the same path with arbitrary bytes.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use efs_proxy::internal::forward::Stats;
use efs_proxy::internal::forward::{ForwardEnd, forward};
use efs_rpc::test_util::fragmented;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAX_RECORD: usize = 4096;

fn single_fragments(messages: &[Vec<u8>]) -> Vec<u8> {
    messages
        .iter()
        .flat_map(|m| fragmented(m, &[m.len()]))
        .collect()
}

async fn write_in_chunks<W: AsyncWriteExt + Unpin>(w: &mut W, bytes: &[u8], chunks: &[usize]) {
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = chunks[i % chunks.len()].min(rest.len());
        i += 1;
        w.write_all(&rest[..n]).await.unwrap();
        rest = &rest[n..];
    }
}

fn messages() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 1..MAX_RECORD), 0..16)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn each_side_receives_the_other_sides_records(
        up in messages(),
        down in messages(),
        pending_records in 0usize..3,
        fragment_sizes in prop::collection::vec(1usize..3000, 1..4),
        chunk_sizes in prop::collection::vec(1usize..6000, 1..4),
        capacity in 1usize..10_000,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (end, server_got, client_got) = runtime.block_on(async {
            let (client, proxy_client) = tokio::io::duplex(capacity);
            let (server, proxy_server) = tokio::io::duplex(capacity);
            let pending_records = pending_records.min(down.len());
            let pending: Vec<u8> = down[..pending_records]
                .iter()
                .flat_map(|m| fragmented(m, &fragment_sizes))
                .collect();
            let server_sends: Vec<u8> = down[pending_records..]
                .iter()
                .flat_map(|m| fragmented(m, &fragment_sizes))
                .collect();
            let client_sends: Vec<u8> =
                up.iter().flat_map(|m| fragmented(m, &fragment_sizes)).collect();
            let client_expects = single_fragments(&down).len();

            let task = tokio::spawn(forward(
                proxy_client,
                proxy_server,
                BytesMut::from(&pending[..]),
                MAX_RECORD,
                Arc::new(Stats::default()),
            ));
            let (mut client_read, mut client_write) = tokio::io::split(client);
            let (mut server_read, mut server_write) = tokio::io::split(server);
            let (got_all_tx, got_all_rx) = tokio::sync::oneshot::channel();
            let client_writer = async {
                write_in_chunks(&mut client_write, &client_sends, &chunk_sizes).await;
                // Close only once every server record arrived: closing ends forwarding.
                let _ = got_all_rx.await;
                client_write.shutdown().await.unwrap();
            };
            let client_reader = async {
                let mut got = Vec::new();
                let mut buf = vec![0; 8192];
                let mut signal = Some(got_all_tx);
                loop {
                    if got.len() >= client_expects
                        && let Some(tx) = signal.take()
                    {
                        let _ = tx.send(());
                    }
                    match client_read.read(&mut buf).await.unwrap() {
                        0 => break,
                        n => got.extend_from_slice(&buf[..n]),
                    }
                }
                got
            };
            let server_writer = async {
                write_in_chunks(&mut server_write, &server_sends, &chunk_sizes).await;
            };
            let server_reader = async {
                let mut got = Vec::new();
                server_read.read_to_end(&mut got).await.unwrap();
                got
            };
            let ((), client_got, (), server_got) = tokio::time::timeout(
                Duration::from_secs(30),
                async { tokio::join!(client_writer, client_reader, server_writer, server_reader) },
            )
            .await
            .expect("forwarding stalled");
            let end = task.await.unwrap();
            (end, server_got, client_got)
        });
        prop_assert!(matches!(end, ForwardEnd::ClientClosed), "{}", end);
        prop_assert!(server_got == single_fragments(&up), "records lost or changed on the way up");
        prop_assert!(client_got == single_fragments(&down), "records lost or changed on the way down");
    }
}

/// A regression test for a bug the property test above found (and fuzz/regressions/forward/):
/// records that arrived with the bind reply (`server_pending`) were forwarded only once the
/// server sent more bytes, because `FramedRead` decodes its read buffer only after a read; a
/// server callback (CB_NULL) right behind the bind reply would have waited for the next reply.
/// `Leg::new` now decodes them up front.
#[test]
fn pending_records_are_forwarded_before_the_server_sends_more() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (mut client, proxy_client) = tokio::io::duplex(4096);
        let (_server, proxy_server) = tokio::io::duplex(4096);
        let record = fragmented(b"a callback right after the bind reply", &[1000]);
        let task = tokio::spawn(forward(
            proxy_client,
            proxy_server,
            BytesMut::from(&record[..]),
            MAX_RECORD,
            Arc::new(Stats::default()),
        ));
        let mut got = vec![0; record.len()];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
            .await
            .expect("the pending record was not forwarded")
            .unwrap();
        assert_eq!(got, record);
        task.abort();
    });
}
