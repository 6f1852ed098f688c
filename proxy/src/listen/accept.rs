//! What a local user can make the listener hold: a cap on client connections, a deadline for
//! a connection's first record, and a spare file descriptor for the accept loop.
//!
//! A connection is *waiting* from accept until its first complete record, and costs no server
//! connection while it waits (the mount helper's connect-and-close port probe costs nothing).
//! At the cap, or when the process runs out of file descriptors, the oldest waiting connection
//! is closed to make room: a flood of idle connections cannot keep the NFS client out, since
//! its connection sends its first record at once and stops waiting. With nothing waiting, a
//! new connection over the cap is accepted and closed at once (logged), so the kernel's
//! backlog never fills with connections nobody will serve.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use efs_rpc::{Record, RecordCodec, RecordError};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

/// Default cap on client connections (sessions and waiting connections together).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default time a new connection has to send its first complete record.
pub(crate) const DEFAULT_FIRST_RECORD_TIMEOUT: Duration = Duration::from_secs(10);
/// File descriptors kept free for everything but client connections (server connections of
/// the sessions, certificate reloads, logs, the spare).
const FD_HEADROOM: usize = 16;

/// Client connections of one proxy: counted, and the waiting ones evictable, oldest first.
pub(crate) struct Connections {
    cap: usize,
    open: AtomicUsize,
    next_id: AtomicU64,
    waiting: Mutex<BTreeMap<u64, CancellationToken>>,
}

/// A client connection's place under the cap; released when dropped.
pub(crate) struct Slot {
    connections: Arc<Connections>,
    id: u64,
}

impl Connections {
    pub(crate) fn new(cap: usize) -> Arc<Connections> {
        Arc::new(Connections {
            cap: cap.max(1),
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            waiting: Mutex::new(BTreeMap::new()),
        })
    }

    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// A slot for a new connection, closing the oldest waiting one if the cap is reached;
    /// `None` when the cap is reached and nothing waits. The slot starts waiting: `evicted` is
    /// cancelled if it is closed to make room.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<(Slot, CancellationToken)> {
        if self.open.load(Ordering::Relaxed) >= self.cap && !self.evict_oldest_waiting() {
            return None;
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let evicted = CancellationToken::new();
        self.lock().insert(id, evicted.clone());
        let slot = Slot {
            connections: self.clone(),
            id,
        };
        Some((slot, evicted))
    }

    /// Closes the connection that has waited longest for its first record; false if none.
    pub(crate) fn evict_oldest_waiting(&self) -> bool {
        match self.lock().pop_first() {
            Some((_, token)) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, CancellationToken>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Slot {
    /// The connection sent its first record: it is no longer evictable.
    pub(crate) fn served(&self) {
        self.connections.lock().remove(&self.id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.id);
        self.connections.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The cap to use: `wanted`, lowered so client connections and their first server connections
/// fit under the process's open-file limit. Returns the cap and the limit when it lowered it.
pub(crate) fn effective_cap(wanted: usize) -> (usize, Option<u64>) {
    match open_file_limit() {
        Some(limit) => {
            let fit = (usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .saturating_sub(FD_HEADROOM)
                / 2)
            .max(1);
            if fit < wanted {
                (fit, Some(limit))
            } else {
                (wanted, None)
            }
        }
        None => (wanted, None),
    }
}

/// Raises the soft open-file limit to the hard one (as Go's runtime does), and returns the
/// soft limit in force.
pub(crate) fn open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (limit.current, limit.maximum)
        && soft < hard
    {
        let raised = rustix::process::Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return Some(hard);
        }
    }
    // None from rustix means unlimited (RLIM_INFINITY).
    Some(limit.current.unwrap_or(u64::MAX))
}

/// A file descriptor held in reserve: at EMFILE the accept loop gives it up to accept and
/// close the connection at the head of the backlog, then takes it back.
pub(crate) struct SpareFd(Option<File>);

impl SpareFd {
    pub(crate) fn new() -> SpareFd {
        SpareFd(File::open("/dev/null").ok())
    }

    pub(crate) fn release(&mut self) {
        self.0 = None;
    }

    pub(crate) fn restore(&mut self) {
        if self.0.is_none() {
            self.0 = File::open("/dev/null").ok();
        }
    }
}

impl Default for SpareFd {
    fn default() -> Self {
        Self::new()
    }
}

/// True for the accept errors that mean "out of file descriptors".
pub(crate) fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// The first records of a connection, read before any server connection is opened.
pub(crate) struct FirstRecords {
    /// Complete records, in order (usually one).
    pub records: VecDeque<Record>,
    /// Bytes of the next, incomplete record.
    pub rest: BytesMut,
}

/// Why a connection ended before its first record.
#[derive(Debug)]
pub(crate) enum FirstRecordEnd {
    /// Closed without a byte: a port probe.
    Probe,
    /// Closed or failed part-way through the first record.
    Closed(io::Error),
    Invalid(RecordError),
    /// No complete record within the deadline.
    Timeout(Duration),
}

impl std::fmt::Display for FirstRecordEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FirstRecordEnd::Probe => f.write_str("closed before sending anything (port probe)"),
            FirstRecordEnd::Closed(e) => write!(f, "closed during its first record: {e}"),
            FirstRecordEnd::Invalid(e) => {
                write!(f, "client side failed: {e} (in its first record)")
            }
            FirstRecordEnd::Timeout(limit) => write!(
                f,
                "no complete RPC record within {limit:?} of connecting (an idle connection, or \
                 not an NFS client; --first-record-timeout); closed without contacting the \
                 server"
            ),
        }
    }
}

/// Reads until at least one complete record has arrived, within `limit`.
pub(crate) async fn read_first_records(
    client: &mut TcpStream,
    max_record_size: usize,
    limit: Duration,
) -> Result<FirstRecords, FirstRecordEnd> {
    let read = async {
        let mut codec = RecordCodec::new(max_record_size);
        let mut buf = BytesMut::with_capacity(1024);
        let mut records = VecDeque::new();
        let mut received = 0usize;
        loop {
            while let Some(record) = codec.decode(&mut buf).map_err(FirstRecordEnd::Invalid)? {
                records.push_back(record);
            }
            if !records.is_empty() {
                return Ok(FirstRecords { records, rest: buf });
            }
            match client.read_buf(&mut buf).await {
                Ok(0) if received == 0 => return Err(FirstRecordEnd::Probe),
                Ok(0) => {
                    return Err(FirstRecordEnd::Closed(io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(n) => received += n,
                Err(e) => return Err(FirstRecordEnd::Closed(e)),
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or(Err(FirstRecordEnd::Timeout(limit)))
}
