//! Bounds on what clients can hold: connections, and time between request body bytes.
//!
//! Every connection holds a file descriptor, and a PUT in progress also holds an open file on
//! the NFS mount. Without bounds a client that opens connections and never finishes them (or a
//! PUT whose body stalls) holds both forever.
//!
//! * Connections: at most `--max-connections` are served at once. Past the cap the server stops
//!   accepting: new connections wait in the kernel's listen backlog (the client sees a slow
//!   connect, not an error) and are served as soon as one closes. Idle connections close after
//!   the header read timeout, so a full server drains by itself. Finder opens a handful.
//! * Request bodies: [`IdleBody`] fails the body when no data arrived for `--body-timeout`
//!   seconds; the request is answered 408 and its connection closed, and a PUT's temporary file
//!   is removed ([`crate::atomic`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// A request body that fails after `timeout` without data.
pub struct IdleBody<B> {
    inner: B,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

impl<B> IdleBody<B> {
    /// Wraps `inner`; `expired` is set when the timeout fires.
    pub fn new(inner: B, timeout: Duration, expired: Arc<AtomicBool>) -> Self {
        IdleBody {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            expired,
        }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Data = B::Data;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = Instant::now() + this.timeout;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(io::Error::other(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.expired.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request body stalled (--body-timeout)",
                    ))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Logs "the connection cap is reached" at most once a minute.
#[derive(Default)]
pub struct CapWarning {
    last: Option<Instant>,
}

impl CapWarning {
    /// Called when the cap holds a new connection back.
    pub fn reached(&mut self, max: usize) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.last = Some(Instant::now());
        tracing::warn!(
            "{max} connections open, the cap (--max-connections {max}): new connections wait \
             in the listen backlog until one closes; raise --max-connections if that many \
             clients are expected (logged at most once a minute)"
        );
    }
}
