//! The file system the WebDAV handler serves: the NFS mount, minus Finder's metadata files,
//! plus in-memory dead properties.
//!
//! * Ordinary paths go to dav-server's `LocalFs` in its macOS mode (it hides `.localized` and
//!   answers Finder's `/.metadata_never_index` and `/.ql_disablethumbnails` probes without
//!   touching the disk).
//! * `._*` and `.DS_Store` go to the [`Overlay`] (memory) and never reach the mount; such
//!   files already in the bucket are not shown. Moving or copying between the two kinds of
//!   names is refused (403): it would either drop a file into memory or leak metadata into the
//!   bucket.
//! * Dead properties live in the [`PropStore`].
//! * A write is made durable before the PUT is answered: `flush` fsyncs the file, so an NFS
//!   write error (quota, permissions on the server, lost connection) becomes a 5xx instead of a
//!   silently short object.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavFileSystem, DavMetaData, DavProp, FsError, FsFuture, FsStream,
    OpenOptions, ReadDirMeta,
};
use dav_server::localfs::LocalFs;
use futures_util::{FutureExt, StreamExt};
use http::StatusCode;

use crate::junk::{is_finder_metadata, path_is_finder_metadata};
use crate::overlay::Overlay;
use crate::props::PropStore;

/// Limits of what is kept in memory.
#[derive(Debug, Clone, Copy)]
pub struct MemoryLimits {
    /// Bytes of Finder metadata files (`._*`, `.DS_Store`).
    pub metadata_bytes: u64,
    /// Bytes of dead properties.
    pub props_bytes: usize,
}

impl Default for MemoryLimits {
    fn default() -> Self {
        MemoryLimits {
            metadata_bytes: 64 << 20,
            props_bytes: 16 << 20,
        }
    }
}

/// See the module documentation.
#[derive(Clone)]
pub struct BucketFs {
    real: LocalFs,
    root: PathBuf,
    overlay: Overlay,
    props: Arc<PropStore>,
}

fn is_meta(path: &DavPath) -> bool {
    path_is_finder_metadata(path.as_bytes())
}

impl BucketFs {
    /// Serves the directory `root` (the NFS mount point).
    pub fn new(root: impl Into<PathBuf>, limits: MemoryLimits) -> Self {
        let root = root.into();
        BucketFs {
            // public: files 0644 and directories 0755 (less the umask), so other NFS clients
            // of the file system can read what is uploaded here.
            real: *LocalFs::new(&root, true, false, true),
            root,
            overlay: Overlay::new(limits.metadata_bytes),
            props: Arc::new(PropStore::new(limits.props_bytes)),
        }
    }

    /// The in-memory store of Finder metadata files (for tests and statistics).
    pub fn overlay(&self) -> &Overlay {
        &self.overlay
    }

    async fn real_parent_exists(&self, path: &DavPath) -> bool {
        match DavFileSystem::metadata(&self.real, &path.parent()).await {
            Ok(meta) => meta.is_dir(),
            Err(_) => false,
        }
    }

    fn host_path(&self, path: &DavPath) -> PathBuf {
        self.root.join(path.as_rel_ospath())
    }
}

impl DavFileSystem for BucketFs {
    fn open<'a>(
        &'a self,
        path: &'a DavPath,
        options: OpenOptions,
    ) -> FsFuture<'a, Box<dyn DavFile>> {
        async move {
            if is_meta(path) {
                let parent = self.real_parent_exists(path).await;
                return self.overlay.open(path, options, parent).await;
            }
            let writing = options.write || options.append;
            let file = self.real.open(path, options).await?;
            if !writing {
                return Ok(file);
            }
            // A second descriptor, opened now, sees every write-back error from here on.
            let host = self.host_path(path);
            let sync = tokio::task::spawn_blocking(move || std::fs::File::open(host))
                .await
                .ok()
                .and_then(Result::ok);
            Ok(Box::new(SyncedFile {
                inner: file,
                sync: sync.map(Arc::new),
                path: path.as_url_string(),
            }) as Box<dyn DavFile>)
        }
        .boxed()
    }

    fn read_dir<'a>(
        &'a self,
        path: &'a DavPath,
        meta: ReadDirMeta,
    ) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        async move {
            if is_meta(path) {
                return self.overlay.read_dir(path).await;
            }
            let real = self.real.read_dir(path, meta).await?;
            let real = real.filter(|entry| {
                let keep = match entry {
                    Ok(e) => !is_finder_metadata(&e.name()),
                    Err(_) => true,
                };
                std::future::ready(keep)
            });
            let held = self.overlay.entries(path).await;
            Ok(Box::pin(real.chain(held)) as FsStream<Box<dyn DavDirEntry>>)
        }
        .boxed()
    }

    fn metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        if is_meta(path) {
            return self.overlay_metadata(path);
        }
        self.real.metadata(path)
    }

    fn symlink_metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        if is_meta(path) {
            return self.overlay_metadata(path);
        }
        self.real.symlink_metadata(path)
    }

    fn create_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            if is_meta(path) {
                let parent = self.real_parent_exists(path).await;
                return self.overlay.create_dir(path, parent).await;
            }
            self.real.create_dir(path).await
        }
        .boxed()
    }

    fn remove_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            if is_meta(path) {
                self.overlay.remove_dir(path).await?;
            } else {
                self.real.remove_dir(path).await?;
                self.overlay.forget_dir(path).await;
            }
            self.props.remove_tree(path.as_bytes());
            Ok(())
        }
        .boxed()
    }

    fn remove_file<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            if is_meta(path) {
                self.overlay.remove_file(path).await?;
            } else {
                self.real.remove_file(path).await?;
            }
            self.props.remove_tree(path.as_bytes());
            Ok(())
        }
        .boxed()
    }

    fn rename<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            match (is_meta(from), is_meta(to)) {
                (true, true) => self.overlay.rename(from, to, true).await?,
                (false, false) => {
                    self.real.rename(from, to).await?;
                    // Held metadata of the files in a moved directory moves along.
                    if let Err(e) = self.overlay.rename(from, to, false).await {
                        tracing::debug!(?from, ?to, "in-memory metadata not moved: {e}");
                    }
                }
                _ => return Err(mixed(from, to)),
            }
            self.props.rename_tree(from.as_bytes(), to.as_bytes());
            Ok(())
        }
        .boxed()
    }

    fn copy<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            match (is_meta(from), is_meta(to)) {
                (true, true) => {
                    let parent = self.real_parent_exists(to).await;
                    self.overlay.copy(from, to, parent).await?;
                }
                (false, false) => self.real.copy(from, to).await?,
                _ => return Err(mixed(from, to)),
            }
            self.props.copy_one(from.as_bytes(), to.as_bytes());
            Ok(())
        }
        .boxed()
    }

    fn set_accessed<'a>(
        &'a self,
        path: &'a DavPath,
        tm: std::time::SystemTime,
    ) -> FsFuture<'a, ()> {
        if is_meta(path) {
            return Box::pin(std::future::ready(Ok(())));
        }
        self.real.set_accessed(path, tm)
    }

    fn set_modified<'a>(
        &'a self,
        path: &'a DavPath,
        tm: std::time::SystemTime,
    ) -> FsFuture<'a, ()> {
        if is_meta(path) {
            return Box::pin(std::future::ready(Ok(())));
        }
        self.real.set_modified(path, tm)
    }

    fn have_props<'a>(
        &'a self,
        _path: &'a DavPath,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        Box::pin(std::future::ready(true))
    }

    fn patch_props<'a>(
        &'a self,
        path: &'a DavPath,
        patch: Vec<(bool, DavProp)>,
    ) -> FsFuture<'a, Vec<(StatusCode, DavProp)>> {
        Box::pin(std::future::ready(Ok(self
            .props
            .patch(path.as_bytes(), patch))))
    }

    fn get_props<'a>(&'a self, path: &'a DavPath, do_content: bool) -> FsFuture<'a, Vec<DavProp>> {
        Box::pin(std::future::ready(Ok(self
            .props
            .get_all(path.as_bytes(), do_content))))
    }

    fn get_prop<'a>(&'a self, path: &'a DavPath, prop: DavProp) -> FsFuture<'a, Vec<u8>> {
        Box::pin(std::future::ready(self.props.get(path.as_bytes(), &prop)))
    }

    fn get_quota(&self) -> FsFuture<'_, (u64, Option<u64>)> {
        self.real.get_quota()
    }
}

impl BucketFs {
    fn overlay_metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        async move { self.overlay.metadata(path).await }.boxed()
    }
}

fn mixed(from: &DavPath, to: &DavPath) -> FsError {
    tracing::info!(
        ?from,
        ?to,
        "refused (403): moving or copying between a Finder metadata name (._*, .DS_Store, \
         kept in memory) and an ordinary name (stored in the bucket)"
    );
    FsError::Forbidden
}

/// A file opened for writing on the mount: `flush` (the end of a PUT) also fsyncs it.
#[derive(Debug)]
struct SyncedFile {
    inner: Box<dyn DavFile>,
    sync: Option<Arc<std::fs::File>>,
    path: String,
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

    fn seek(&mut self, pos: std::io::SeekFrom) -> FsFuture<'_, u64> {
        self.inner.seek(pos)
    }

    fn flush(&mut self) -> FsFuture<'_, ()> {
        async move {
            self.inner.flush().await?;
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
        .boxed()
    }
}
