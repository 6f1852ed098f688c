//! Atomic PUT: a new body goes to a temporary file next to the target, which is renamed onto
//! the target only once the whole body arrived and was fsynced.
//!
//! Behind S3 Files every file in the mount becomes an S3 object, so a PUT written in place
//! would leave a truncated object whenever the upload fails halfway. dav-server's PUT handler
//! cannot tell the file system about that: it calls `flush` when the body *ends*, also when it
//! ended early (a chunked body shorter than its `X-Expected-Entity-Length`) and only then
//! answers 400, and it simply drops the file when reading the body fails (client gone, body
//! timeout). So the decision is taken one level up: the file's `flush` fsyncs and parks the
//! temporary file in the request's [`RequestPuts`], and the server renames it onto the target
//! only if the handler's answer is a success. Anything else (an error answer, a dropped file,
//! a request future dropped with its connection) drops the [`PendingPut`], which removes the
//! temporary file. The target keeps its previous content, or stays absent.
//!
//! Partial updates (`Content-Range`, sabredav's `PATCH`) write in place: they change a few
//! bytes of an existing file by design, and a copy of the whole file per request would cost
//! more than it protects.
//!
//! Temporary names start with [`TEMP_PREFIX`]; listings hide them and requests for them are
//! refused. A server killed mid-upload (SIGKILL, power loss) can leave one behind.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use dav_server::fs::{DavFile, DavMetaData, FsError, FsFuture};
use futures_util::FutureExt;

/// How temporary upload files are named: `PREFIX<pid>-<counter>`.
pub const TEMP_PREFIX: &str = ".efs-webdav-put-";

/// True for the name of a temporary upload file (one raw path segment).
pub fn is_temp_name(name: &[u8]) -> bool {
    name.starts_with(TEMP_PREFIX.as_bytes())
}

/// A fresh temporary name (unique in this process; the pid separates restarts).
pub fn temp_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{TEMP_PREFIX}{:x}-{n:x}", std::process::id())
}

tokio::task_local! {
    static REQUEST: RequestPuts;
}

/// The completed uploads of one request, waiting for the handler's answer.
#[derive(Clone, Default)]
pub struct RequestPuts(Arc<Mutex<Vec<PendingPut>>>);

impl RequestPuts {
    /// Runs `fut` (the handler) with this collection as the request's.
    pub async fn scope<F: Future>(&self, fut: F) -> F::Output {
        REQUEST.scope(self.clone(), fut).await
    }

    fn take(&self) -> Vec<PendingPut> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Renames every parked upload onto its target (the handler answered with success).
    pub async fn commit(&self) -> io::Result<()> {
        let pending = self.take();
        if pending.is_empty() {
            return Ok(());
        }
        tokio::task::spawn_blocking(move || pending.into_iter().try_for_each(PendingPut::rename))
            .await
            .map_err(io::Error::other)?
    }
}

/// A temporary file and the name it gets on success; removed if dropped before that.
#[derive(Debug)]
pub struct PendingPut {
    temp: PathBuf,
    target: PathBuf,
    done: bool,
}

impl PendingPut {
    /// Takes charge of `temp` (already created).
    pub fn new(temp: PathBuf, target: PathBuf) -> Self {
        PendingPut {
            temp,
            target,
            done: false,
        }
    }

    fn rename(mut self) -> io::Result<()> {
        std::fs::rename(&self.temp, &self.target).inspect_err(|e| {
            tracing::warn!(
                target = %self.target.display(),
                "upload not stored: renaming its temporary file failed: {e} (check the NFS \
                 mount and the proxy's log)"
            );
        })?;
        self.done = true;
        Ok(())
    }
}

impl Drop for PendingPut {
    fn drop(&mut self) {
        if !self.done {
            // One unlink; a failed upload must not leave its partial data in the bucket.
            if let Err(e) = std::fs::remove_file(&self.temp) {
                tracing::warn!(temp = %self.temp.display(), "cannot remove a failed upload: {e}");
            } else {
                tracing::debug!(target = %self.target.display(), "failed upload discarded");
            }
        }
    }
}

/// A file opened for writing on the mount: `flush` (the end of a PUT body) fsyncs it and, for
/// an atomic PUT, parks its [`PendingPut`] for the server to commit.
#[derive(Debug)]
pub struct SyncedFile {
    /// The file as dav-server's `LocalFs` opened it (the temporary file for an atomic PUT).
    pub inner: Box<dyn DavFile>,
    /// A second descriptor, opened with the file: it sees every write-back error from then on.
    pub sync: Option<Arc<std::fs::File>>,
    /// The request path, for log lines.
    pub path: String,
    /// For an atomic PUT: the temporary file and its target, parked at `flush`; `None` when
    /// writing in place (partial updates).
    pub pending: Option<PendingPut>,
}

impl SyncedFile {
    async fn fsync(&self) -> Result<(), FsError> {
        let Some(file) = self.sync.clone() else {
            return Ok(());
        };
        let result = tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(|_| FsError::GeneralFailure)?;
        result.map_err(|e| {
            tracing::warn!(
                path = %self.path,
                "fsync failed: {e}; the upload did not reach the file system completely \
                 (check the NFS mount and the proxy's log)"
            );
            FsError::from(e)
        })
    }
}

impl DavFile for SyncedFile {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        self.inner.metadata()
    }

    fn write_buf(&mut self, buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        self.inner.write_buf(buf)
    }

    fn write_bytes(&mut self, buf: Bytes) -> FsFuture<'_, ()> {
        self.inner.write_bytes(buf)
    }

    fn read_bytes(&mut self, count: usize) -> FsFuture<'_, Bytes> {
        self.inner.read_bytes(count)
    }

    fn seek(&mut self, pos: io::SeekFrom) -> FsFuture<'_, u64> {
        self.inner.seek(pos)
    }

    fn flush(&mut self) -> FsFuture<'_, ()> {
        async move {
            self.inner.flush().await?;
            self.fsync().await?;
            let Some(pending) = self.pending.take() else {
                return Ok(());
            };
            let mut unparked = Some(pending);
            let _ = REQUEST.try_with(|puts| {
                if let Some(p) = unparked.take() {
                    puts.0.lock().unwrap_or_else(|e| e.into_inner()).push(p);
                }
            });
            // Outside a server request (the handler used directly) nobody waits for the
            // answer: the body is complete as far as this file can tell.
            if let Some(pending) = unparked {
                tokio::task::spawn_blocking(move || pending.rename())
                    .await
                    .map_err(|_| FsError::GeneralFailure)??;
            }
            Ok(())
        }
        .boxed()
    }
}
