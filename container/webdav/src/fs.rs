//! The file system the WebDAV handler serves: the NFS mount, minus Finder's metadata files,
//! plus in-memory dead properties.
//!
//! * Ordinary paths go to dav-server's `LocalFs` in its macOS mode (it answers Finder's
//!   `/.metadata_never_index` and `/.ql_disablethumbnails` probes without touching the disk),
//!   after [`crate::jail`] checked that no symbolic link on the path leads outside the root
//!   (403 otherwise). Operations on a name itself (lstat, DELETE, the two ends of a MOVE)
//!   resolve only its parent, so a link pointing outside can be deleted or replaced, never
//!   followed.
//! * Finder's metadata names (see [`crate::junk`]) go to the [`Overlay`] (memory) and never
//!   reach the mount; such files already in the bucket are not shown. Moving or copying
//!   between the two kinds of names is refused (403): it would either drop a file into memory
//!   or leak metadata into the bucket.
//! * A full PUT writes a temporary file and renames it onto the target only when the upload
//!   succeeded ([`crate::atomic`]); temporary names are hidden and refused as request paths.
//! * Dead properties live in the [`PropStore`]; the quota properties come from `statvfs`.
//! * A write is made durable before the PUT is answered: `flush` fsyncs the file, so an NFS
//!   write error (quota, permissions on the server, lost connection) becomes a 5xx instead of a
//!   silently short object.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavFileSystem, DavMetaData, DavProp, FsError, FsFuture, FsResult,
    FsStream, OpenOptions, ReadDirMeta,
};
use dav_server::localfs::LocalFs;
use futures_util::{FutureExt, StreamExt};
use http::StatusCode;

use crate::atomic::{PendingPut, SyncedFile, is_temp_name, temp_name};
use crate::jail::{self, Refused};
use crate::junk::{is_finder_metadata, path_is_finder_metadata};
use crate::overlay::{Overlay, dav_path};
use crate::props::PropStore;

/// Limits of what is kept in memory.
#[derive(Debug, Clone, Copy)]
pub struct MemoryLimits {
    /// Bytes of Finder metadata files (`._*`, `.DS_Store`, `Icon\r`, `.localized`).
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

/// The last segment of a path (raw bytes, an optional trailing `/` ignored).
fn last_segment(path: &DavPath) -> &[u8] {
    let bytes = path.as_bytes();
    let trimmed = bytes.strip_suffix(b"/").unwrap_or(bytes);
    trimmed.rsplit(|&b| b == b'/').next().unwrap_or_default()
}

/// Whether a check resolves the last name of the path too (operations that follow it).
#[derive(Clone, Copy)]
enum Last {
    Follow,
    Itself,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> FsResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| FsError::GeneralFailure)
}

impl BucketFs {
    /// Serves the directory `root` (the NFS mount point), which must exist: it is resolved to
    /// its canonical path once, the reference every symbolic link is checked against.
    pub fn new(root: impl AsRef<Path>, limits: MemoryLimits) -> std::io::Result<Self> {
        let root = std::fs::canonicalize(root.as_ref())?;
        Ok(BucketFs {
            // public: files 0644 and directories 0755 (less the umask), so other NFS clients
            // of the file system can read what is uploaded here.
            real: *LocalFs::new(&root, true, false, true),
            root,
            overlay: Overlay::new(limits.metadata_bytes),
            props: Arc::new(PropStore::new(limits.props_bytes)),
        })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The in-memory store of Finder metadata files (for tests and statistics).
    pub fn overlay(&self) -> &Overlay {
        &self.overlay
    }

    /// The host path `path` resolves to, if it stays inside the root (403 if not, and for the
    /// temporary names of uploads in progress).
    async fn inside(&self, path: &DavPath, last: Last) -> FsResult<PathBuf> {
        if is_temp_name(last_segment(path)) {
            tracing::info!(?path, "refused (403): the name of an upload in progress");
            return Err(FsError::Forbidden);
        }
        let root = self.root.clone();
        let rel = path.as_rel_ospath().to_path_buf();
        let resolved = blocking(move || match last {
            Last::Follow => jail::resolve(&root, &rel),
            Last::Itself => jail::resolve_parent(&root, &rel),
        })
        .await?;
        match resolved {
            Ok(host) => Ok(host),
            Err(Refused::Escapes) => {
                tracing::warn!(
                    ?path,
                    "refused (403): a symbolic link on this path points outside --root (or \
                     dangles); efs-webdav never follows links out of the served tree"
                );
                Err(FsError::Forbidden)
            }
            Err(Refused::Io(kind)) => Err(std::io::Error::from(kind).into()),
        }
    }

    async fn real_metadata(&self, path: &DavPath) -> FsResult<Box<dyn DavMetaData>> {
        self.inside(path, Last::Follow).await?;
        self.real.metadata(path).await
    }

    async fn real_parent_exists(&self, path: &DavPath) -> bool {
        match self.real_metadata(&path.parent()).await {
            Ok(meta) => meta.is_dir(),
            Err(_) => false,
        }
    }

    /// Opens a file of the mount; a full PUT (write + truncate) goes to a temporary file.
    async fn open_real(&self, path: &DavPath, options: OpenOptions) -> FsResult<Box<dyn DavFile>> {
        let writing = options.write || options.append;
        let target = self.inside(path, Last::Follow).await?;
        if options.write && options.truncate && !options.append {
            return self.open_atomic(path, target, options).await;
        }
        let file = self.real.open(path, options).await?;
        if !writing {
            return Ok(file);
        }
        let sync = blocking(move || std::fs::File::open(target)).await?.ok();
        Ok(Box::new(SyncedFile {
            inner: file,
            sync: sync.map(Arc::new),
            path: path.as_url_string(),
            pending: None,
        }))
    }

    /// A full PUT: checks what `options` require of the target (resolved to `target`, links
    /// inside the root followed), then creates a temporary file in the target's directory.
    async fn open_atomic(
        &self,
        path: &DavPath,
        target: PathBuf,
        options: OpenOptions,
    ) -> FsResult<Box<dyn DavFile>> {
        let (create, create_new) = (options.create, options.create_new);
        let probe = target.clone();
        let existing = blocking(move || -> FsResult<Option<std::fs::Metadata>> {
            let parent_is_dir = probe.parent().is_some_and(Path::is_dir);
            match std::fs::metadata(&probe) {
                Ok(m) if m.is_dir() => Err(FsError::Forbidden),
                Ok(_) if create_new => Err(FsError::Exists),
                Ok(m) => Ok(Some(m)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if (create || create_new) && parent_is_dir {
                        Ok(None)
                    } else {
                        Err(FsError::NotFound)
                    }
                }
                Err(e) => Err(e.into()),
            }
        })
        .await??;
        let dir = target.parent().ok_or(FsError::Forbidden)?.to_path_buf();
        let name = temp_name();
        let temp = dir.join(&name);
        // The temporary file's WebDAV path: the resolved directory, relative to the root.
        let mut raw = Vec::new();
        let rel_dir = dir
            .strip_prefix(&self.root)
            .map_err(|_| FsError::Forbidden)?;
        for segment in rel_dir.iter() {
            raw.push(b'/');
            raw.extend_from_slice(segment.as_bytes());
        }
        raw.push(b'/');
        raw.extend_from_slice(name.as_bytes());
        let temp_path = dav_path(&raw)?;
        let create = OpenOptions {
            write: true,
            create_new: true,
            ..OpenOptions::default()
        };
        let inner = self.real.open(&temp_path, create).await?;
        let pending = PendingPut::new(temp.clone(), target);
        let sync = blocking(move || {
            if let Some(old) = existing {
                // Keep the replaced file's mode and owner (best effort: only root may chown).
                let _ = std::fs::set_permissions(&temp, old.permissions());
                let _ = std::os::unix::fs::chown(&temp, Some(old.uid()), Some(old.gid()));
            }
            std::fs::File::open(&temp)
        })
        .await??;
        Ok(Box::new(SyncedFile {
            inner,
            sync: Some(Arc::new(sync)),
            path: path.as_url_string(),
            pending: Some(pending),
        }))
    }

    /// Used and total bytes of the file system behind the root (`statvfs`), as dav-server's
    /// `get_quota` wants them: it answers `quota-used-bytes` with the first and
    /// `quota-available-bytes` with total minus used (for the root collection; for other
    /// resources dav-server puts the resource's own size in "used").
    async fn statvfs_quota(&self) -> FsResult<(u64, Option<u64>)> {
        let root = self.root.clone();
        let st = blocking(move || rustix::fs::statvfs(&root))
            .await?
            .map_err(|e| {
                tracing::warn!("statvfs of --root failed: {e}; quota properties unanswered");
                FsError::GeneralFailure
            })?;
        let used = st
            .f_blocks
            .saturating_sub(st.f_bfree)
            .saturating_mul(st.f_frsize);
        let available = st.f_bavail.saturating_mul(st.f_frsize);
        Ok((used, Some(used.saturating_add(available))))
    }

    fn overlay_metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        async move { self.overlay.metadata(path).await }.boxed()
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
            self.open_real(path, options).await
        }
        .boxed()
    }

    fn read_dir<'a>(
        &'a self,
        path: &'a DavPath,
        _meta: ReadDirMeta,
    ) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        async move {
            if is_meta(path) {
                return self.overlay.read_dir(path).await;
            }
            self.inside(path, Last::Follow).await?;
            // Entries carry lstat metadata whatever the caller asked: a link's entry must not
            // reveal its target. dav-server's PROPFIND leaves links out of listings; the
            // recursive DELETE and COPY act on them through the checked operations here.
            let real = self.real.read_dir(path, ReadDirMeta::DataSymlink).await?;
            let real = real.filter(|entry| {
                let keep = match entry {
                    Ok(e) => {
                        let name = e.name();
                        !is_finder_metadata(&name) && !is_temp_name(&name)
                    }
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
        self.real_metadata(path).boxed()
    }

    fn symlink_metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        if is_meta(path) {
            return self.overlay_metadata(path);
        }
        async move {
            self.inside(path, Last::Itself).await?;
            self.real.symlink_metadata(path).await
        }
        .boxed()
    }

    fn create_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            if is_meta(path) {
                let parent = self.real_parent_exists(path).await;
                return self.overlay.create_dir(path, parent).await;
            }
            self.inside(path, Last::Follow).await?;
            self.real.create_dir(path).await
        }
        .boxed()
    }

    fn remove_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            if is_meta(path) {
                self.overlay.remove_dir(path).await?;
            } else {
                self.inside(path, Last::Itself).await?;
                self.real.remove_dir(path).await?;
                self.overlay.forget_dir(path).await;
            }
            self.props.remove_tree(path.as_bytes());
            Ok(())
        }
        .boxed()
    }

    /// On a symbolic link this removes the link (unlink does not follow it), also one that
    /// points outside the root: its target is untouched.
    fn remove_file<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            if is_meta(path) {
                self.overlay.remove_file(path).await?;
            } else {
                self.inside(path, Last::Itself).await?;
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
                    // rename(2) moves or replaces names, it follows neither.
                    self.inside(from, Last::Itself).await?;
                    self.inside(to, Last::Itself).await?;
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
                (false, false) => {
                    // copy reads through `from` and writes through `to`.
                    self.inside(from, Last::Follow).await?;
                    self.inside(to, Last::Follow).await?;
                    self.real.copy(from, to).await?
                }
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
        async move {
            if is_meta(path) {
                return Ok(());
            }
            self.inside(path, Last::Follow).await?;
            self.real.set_accessed(path, tm).await
        }
        .boxed()
    }

    fn set_modified<'a>(
        &'a self,
        path: &'a DavPath,
        tm: std::time::SystemTime,
    ) -> FsFuture<'a, ()> {
        async move {
            if is_meta(path) {
                return Ok(());
            }
            self.inside(path, Last::Follow).await?;
            self.real.set_modified(path, tm).await
        }
        .boxed()
    }

    fn have_props<'a>(
        &'a self,
        _path: &'a DavPath,
    ) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
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

    /// `LocalFs` has no quota on Linux (dav-server then leaves the properties out of the
    /// PROPFIND answer, and Finder shows no free space): answered from `statvfs` of the root.
    fn get_quota(&self) -> FsFuture<'_, (u64, Option<u64>)> {
        self.statvfs_quota().boxed()
    }
}

fn mixed(from: &DavPath, to: &DavPath) -> FsError {
    tracing::info!(
        ?from,
        ?to,
        "refused (403): moving or copying between a Finder metadata name (._*, .DS_Store, \
         Icon\\r, .localized: kept in memory) and an ordinary name (stored in the bucket)"
    );
    FsError::Forbidden
}
