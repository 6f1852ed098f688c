//! A record writer with two ways to hold what it has not written yet, chosen per stream
//! because each wins on one side (measured with `tests/bench/compare.sh`, docs/benchmarks.md).
//!
//! Records arrive as `Bytes` in wire form, split from the other connection's read buffer.
//!
//! * [`Hold::InPlace`] (towards the client's TCP socket): the records are queued as they are
//!   and handed to `poll_write_vectored`; the kernel copies them out of the read buffer, and
//!   a local socket drains them quickly.
//! * [`Hold::Copy`] (towards a TLS server connection): each record is copied into one buffer
//!   the writer reuses. rustls takes plaintext only in 64 KiB steps as its socket drains, so a
//!   queued 1 MiB record kept the reader's buffer shared for a long time and the reader had to
//!   allocate (and fault in) a fresh 1 MiB buffer for every record; after the copy both
//!   buffers are reused for the life of the connection.
//!
//! This mix against in-place on both sides (the design before) and copying on both sides
//! (`tests/bench/experiments/*.patch`), medians of 7 alternating rounds: WRITE 1.07x / 0.99x,
//! READ 1.09x / 1.04x, CPU per GiB 0.85x / 0.99x, RSS under load 0.82x / 1.10x.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWrite;

/// How many records one vectored write may cover (Linux's `IOV_MAX` is 1024; more slices
/// than this buy nothing).
const MAX_SLICES: usize = 64;

/// How a [`RecordWriter`] holds records until they are written; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Queue the records themselves; write them with vectored writes.
    InPlace,
    /// Copy each record into one reused buffer; write from it.
    Copy,
}

/// What a [`RecordWriter`] holds, by [`Hold`].
enum Held {
    InPlace(VecDeque<Bytes>),
    /// Keeps its allocation when drained.
    Copied(BytesMut),
}

/// Queues records and writes them out, applying back-pressure past `limit` queued bytes.
pub(crate) struct RecordWriter<W> {
    io: W,
    held: Held,
    queued: usize,
    limit: usize,
    /// Bytes were handed to `io` since its last flush. A TLS stream accepts plaintext it
    /// cannot send yet (the socket is full) and holds it until flushed, so an empty queue
    /// does not mean everything left.
    unflushed: bool,
}

impl<W: AsyncWrite + Unpin> RecordWriter<W> {
    /// A writer that accepts more records while fewer than `limit` bytes are queued.
    pub(crate) fn new(io: W, limit: usize, hold: Hold) -> Self {
        RecordWriter {
            io,
            held: match hold {
                Hold::InPlace => Held::InPlace(VecDeque::new()),
                Hold::Copy => Held::Copied(BytesMut::new()),
            },
            queued: 0,
            limit,
            unflushed: false,
        }
    }

    /// Bytes waiting to be written.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// True while queued records or bytes buffered inside the stream remain to be sent:
    /// call [`poll_flush`](Self::poll_flush) until it is false.
    pub(crate) fn needs_flush(&self) -> bool {
        self.queued > 0 || self.unflushed
    }

    /// Ready when another record may be queued; writes out queued records to make room.
    /// At most `limit` plus one record is ever queued.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.queued >= self.limit {
            ready!(self.poll_write_some(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Queues one record's wire bytes (call after `poll_ready`).
    pub(crate) fn push(&mut self, wire: Bytes) {
        self.queued += wire.len();
        match &mut self.held {
            Held::InPlace(queue) => queue.push_back(wire),
            Held::Copied(buffer) => buffer.extend_from_slice(&wire),
        }
    }

    /// Writes every queued record and flushes the stream.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.queued > 0 {
            ready!(self.poll_write_some(cx))?;
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        self.unflushed = false;
        Poll::Ready(Ok(()))
    }

    /// Shuts the stream down (TLS close_notify, then FIN) after flushing.
    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_flush(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    /// One write from the front of what is held.
    fn poll_write_some(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let io = Pin::new(&mut self.io);
        let written = match &self.held {
            Held::Copied(buffer) => ready!(io.poll_write(cx, buffer))?,
            Held::InPlace(queue) => {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let count = queue.len().min(MAX_SLICES);
                for (slice, bytes) in slices.iter_mut().zip(queue.iter()) {
                    *slice = IoSlice::new(bytes);
                }
                ready!(io.poll_write_vectored(cx, &slices[..count]))?
            }
        };
        if written == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        self.unflushed = true;
        self.consume(written);
        Poll::Ready(Ok(()))
    }

    fn consume(&mut self, mut written: usize) {
        self.queued -= written;
        let queue = match &mut self.held {
            Held::Copied(buffer) => {
                buffer.advance(written);
                return;
            }
            Held::InPlace(queue) => queue,
        };
        while written > 0 {
            let Some(front) = queue.front_mut() else {
                return;
            };
            if written >= front.len() {
                written -= front.len();
                queue.pop_front();
            } else {
                front.advance(written);
                written = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::AsyncReadExt;

    /// A stream that accepts bytes but sends them only when flushed, as a TLS stream does when
    /// its socket is full.
    #[derive(Default)]
    struct HoldsUntilFlush {
        held: Vec<u8>,
        sent: Vec<u8>,
    }

    impl AsyncWrite for HoldsUntilFlush {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.held.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            let held = std::mem::take(&mut self.held);
            self.sent.extend(held);
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.poll_flush(cx)
        }
    }

    const BOTH: [Hold; 2] = [Hold::InPlace, Hold::Copy];

    #[tokio::test]
    async fn bytes_held_by_the_stream_still_need_a_flush_after_the_queue_drains() {
        for hold in BOTH {
            let mut writer = RecordWriter::new(HoldsUntilFlush::default(), 4, hold);
            writer.push(Bytes::from_static(b"record-1"));
            // Back-pressure writes the queue out to make room: the queue is empty, but the
            // stream holds the bytes.
            poll_fn(|cx| writer.poll_ready(cx)).await.unwrap();
            assert_eq!(writer.queued(), 0, "{hold:?}");
            assert!(
                writer.needs_flush(),
                "{hold:?}: an empty queue is not a flushed stream"
            );
            poll_fn(|cx| writer.poll_flush(cx)).await.unwrap();
            assert!(!writer.needs_flush(), "{hold:?}");
            assert_eq!(writer.io.sent, b"record-1", "{hold:?}");
        }
    }

    #[tokio::test]
    async fn writes_queued_records_in_order_through_a_small_pipe() {
        for hold in BOTH {
            let (a, mut b) = tokio::io::duplex(7); // forces many short writes
            let mut writer = RecordWriter::new(a, 16, hold);
            let records: Vec<Bytes> = (0..50u8)
                .map(|i| Bytes::from(vec![i; i as usize + 1]))
                .collect();
            let expected: Vec<u8> = records.iter().flat_map(|r| r.to_vec()).collect();
            let reader = tokio::spawn(async move {
                let mut got = Vec::new();
                b.read_to_end(&mut got).await.unwrap();
                got
            });
            for record in records {
                poll_fn(|cx| writer.poll_ready(cx)).await.unwrap();
                assert!(writer.queued() < 16 + 51, "back-pressure bounds the queue");
                writer.push(record);
            }
            poll_fn(|cx| writer.poll_shutdown(cx)).await.unwrap();
            assert_eq!(reader.await.unwrap(), expected, "{hold:?}");
        }
    }

    #[tokio::test]
    async fn a_copying_writer_lets_the_record_go_and_reuses_its_buffer() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut writer = RecordWriter::new(a, 1 << 16, Hold::Copy);
        let record = Bytes::from(vec![7u8; 4096]);
        writer.push(record.clone());
        assert!(
            record.is_unique(),
            "the writer keeps no reference to the record"
        );
        let start = |writer: &RecordWriter<_>| match &writer.held {
            Held::Copied(buffer) => buffer.as_ptr(),
            Held::InPlace(_) => unreachable!("a copying writer"),
        };
        let buffer = start(&writer);
        poll_fn(|cx| writer.poll_flush(cx)).await.unwrap();
        writer.push(record.clone());
        assert_eq!(start(&writer), buffer, "the drained buffer is reused");
        poll_fn(|cx| writer.poll_flush(cx)).await.unwrap();
        let mut got = vec![0u8; 8192];
        b.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|&x| x == 7));
    }
}
