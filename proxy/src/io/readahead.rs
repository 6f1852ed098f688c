//! Large socket reads under rustls.
//!
//! rustls pulls TLS bytes from its transport in reads of at most 4 KiB (its deframer's
//! `READ_SIZE`), so a 1 MiB READ reply arrives in some 260 `recvfrom` calls: the benchmark's
//! syscall count showed 40 receives per send. [`ReadAhead`] sits between the TCP socket and
//! rustls and fills a 64 KiB buffer with one call, from which rustls' small reads are served;
//! one extra memory copy (cheap, and in the cache) for a sixteenth of the system calls.
//!
//! The buffer exists only while data flows: it is allocated when a read needs it and given back
//! when the socket has nothing more to read, so the 100 idle connections of a host cost no
//! more than before. Writes pass straight through (rustls already writes whole TLS records,
//! vectored). Written by hand because tokio's `BufReader` keeps its buffer for the life of the
//! connection (64 KiB per idle connection).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much one socket read may take: four full TLS records.
pub(crate) const READ_AHEAD: usize = 64 * 1024;

/// A transport that reads ahead in [`READ_AHEAD`] chunks; see the module documentation.
#[derive(Debug)]
pub(crate) struct ReadAhead<S> {
    inner: S,
    /// Bytes read from `inner` and not handed out yet; no allocation while empty and idle.
    buffer: BytesMut,
}

impl<S> ReadAhead<S> {
    pub(crate) fn new(inner: S) -> Self {
        ReadAhead {
            inner,
            buffer: BytesMut::new(),
        }
    }

    /// The wrapped stream (for tests).
    #[cfg(test)]
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Bytes read ahead and not handed out yet (for tests).
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Whether a buffer is held (for tests: idle connections must hold none).
    #[cfg(test)]
    pub(crate) fn holds_buffer(&self) -> bool {
        self.buffer.capacity() > 0
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buffer.is_empty() {
            // A caller that asks for as much as a chunk gains nothing from the copy.
            if out.remaining() >= READ_AHEAD {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            // Reuses the allocation when the previous chunk is drained (`BytesMut` is unique).
            this.buffer.reserve(READ_AHEAD);
            let filled = match tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.buffer,
            ) {
                Poll::Pending => {
                    // Nothing to read: the connection is quiet, give the memory back.
                    this.buffer = BytesMut::new();
                    return Poll::Pending;
                }
                Poll::Ready(result) => result?,
            };
            if filled == 0 {
                this.buffer = BytesMut::new();
                return Poll::Ready(Ok(())); // end of stream: nothing put into `out`
            }
        }
        let n = out.remaining().min(this.buffer.len());
        out.put_slice(&this.buffer[..n]);
        this.buffer.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A transport scripted as a list of steps: a chunk of bytes a read may return (up to
    /// the caller's space), `None` for "nothing now" (Pending, waking at once). Counts reads.
    struct Script {
        steps: VecDeque<Option<Vec<u8>>>,
        reads: usize,
        written: Vec<u8>,
    }

    impl Script {
        fn new(steps: impl IntoIterator<Item = Option<Vec<u8>>>) -> Self {
            Script {
                steps: steps.into_iter().collect(),
                reads: 0,
                written: Vec::new(),
            }
        }
    }

    impl AsyncRead for Script {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.reads += 1;
            match this.steps.pop_front() {
                None => Poll::Ready(Ok(())), // end of stream
                Some(None) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Some(Some(mut chunk)) => {
                    let n = out.remaining().min(chunk.len());
                    out.put_slice(&chunk[..n]);
                    if n < chunk.len() {
                        this.steps.push_front(Some(chunk.split_off(n)));
                    }
                    Poll::Ready(Ok(()))
                }
            }
        }
    }

    impl AsyncWrite for Script {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn small_reads_are_served_from_one_large_socket_read() {
        let data = pattern(READ_AHEAD);
        let mut stream = ReadAhead::new(Script::new([Some(data.clone())]));
        let mut got = Vec::new();
        let mut piece = [0u8; 4096];
        while got.len() < data.len() {
            let n = stream.read(&mut piece).await.unwrap();
            got.extend_from_slice(&piece[..n]);
        }
        assert_eq!(got, data);
        assert_eq!(
            stream.get_ref().reads,
            1,
            "16 reads of 4 KiB, one socket read"
        );
    }

    #[tokio::test]
    async fn a_read_as_large_as_a_chunk_bypasses_the_buffer() {
        let data = pattern(2 * READ_AHEAD);
        let mut stream = ReadAhead::new(Script::new([Some(data.clone())]));
        let mut big = vec![0u8; 2 * READ_AHEAD];
        let n = stream.read(&mut big).await.unwrap();
        assert_eq!(n, 2 * READ_AHEAD, "straight into the caller's buffer");
        assert_eq!(big, data);
        assert!(!stream.holds_buffer());
    }

    #[tokio::test]
    async fn a_quiet_socket_gives_the_buffer_back() {
        let mut stream = ReadAhead::new(Script::new([Some(pattern(100)), None, Some(pattern(10))]));
        let mut piece = [0u8; 4096];
        assert_eq!(stream.read(&mut piece).await.unwrap(), 100);
        assert!(stream.holds_buffer(), "kept while data flows");
        // The next read finds the socket empty once (Pending), then 10 bytes.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut buf = ReadBuf::new(&mut piece);
        assert!(
            Pin::new(&mut stream)
                .poll_read(&mut cx, &mut buf)
                .is_pending()
        );
        assert!(!stream.holds_buffer(), "idle: no buffer held");
        assert_eq!(stream.read(&mut piece).await.unwrap(), 10);
        assert_eq!(stream.read(&mut piece).await.unwrap(), 0, "end of stream");
        assert!(!stream.holds_buffer());
    }

    #[tokio::test]
    async fn writes_pass_straight_through() {
        let mut stream = ReadAhead::new(Script::new([Some(pattern(10))]));
        let mut piece = [0u8; 4];
        stream.read_exact(&mut piece).await.unwrap();
        stream.write_all(b"call").await.unwrap();
        let n = stream
            .write_vectored(&[io::IoSlice::new(b"a"), io::IoSlice::new(b"b")])
            .await
            .unwrap();
        assert_eq!(
            stream.get_ref().written,
            [&b"call"[..], &b"ab"[..n]].concat()
        );
        assert_eq!(stream.buffered(), 6, "read-ahead bytes untouched by writes");
    }

    proptest::proptest! {
        /// Whatever the socket's chunking, pauses and the reader's sizes, the bytes come out
        /// unchanged and in order.
        #[test]
        fn bytes_come_out_as_they_went_in(
            chunks in proptest::collection::vec(
                proptest::option::weighted(0.8, 1usize..100_000), 0..20),
            sizes in proptest::collection::vec(1usize..80_000, 1..20),
        ) {
            let mut data = Vec::new();
            let steps: Vec<Option<Vec<u8>>> = chunks
                .iter()
                .map(|c| c.map(|len| {
                    let chunk: Vec<u8> = (data.len()..data.len() + len).map(|i| (i % 251) as u8).collect();
                    data.extend_from_slice(&chunk);
                    chunk
                }))
                .collect();
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let got = runtime.block_on(async {
                let mut stream = ReadAhead::new(Script::new(steps));
                let mut got = Vec::new();
                for size in sizes.iter().cycle() {
                    let mut piece = vec![0u8; *size];
                    let n = stream.read(&mut piece).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&piece[..n]);
                }
                got
            });
            proptest::prop_assert_eq!(got, data);
        }
    }
}
