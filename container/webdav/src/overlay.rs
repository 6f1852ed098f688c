//! Finder's metadata files (`._*`, `.DS_Store`), held in memory instead of in the bucket.
//!
//! A dav-server `MemFs` mirrors just enough of the directory tree to hold them: a directory
//! exists there only as the parent of such a file. Finder reads its metadata back during the
//! session (tags, icon positions, extended attributes of copied files), and loses it on
//! restart, which Finder tolerates: the files themselves are complete in the bucket.
//!
//! Memory is bounded: a write that would take the total over the limit fails with 507
//! Insufficient Storage (Finder then reports the copy as failed, so the limit is generous).
//! Accounting uses the write position, so a PUT with a large `Content-Range` offset cannot make
//! `MemFs` allocate the gap first.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavFileSystem, DavMetaData, FsError, FsFuture, FsResult, FsStream,
    OpenOptions, ReadDirMeta,
};
use dav_server::memfs::MemFs;
use futures_util::{FutureExt, StreamExt};

use crate::junk::is_finder_metadata;
use crate::props::normalize;

/// Bytes held per file, and their total.
#[derive(Default)]
struct Usage {
    sizes: HashMap<Vec<u8>, u64>,
    total: u64,
}

impl Usage {
    fn get(&self, key: &[u8]) -> u64 {
        self.sizes.get(key).copied().unwrap_or(0)
    }

    fn set(&mut self, key: Vec<u8>, len: u64) {
        let old = self.sizes.insert(key, len).unwrap_or(0);
        self.total = self.total - old + len;
    }

    fn forget_tree(&mut self, root: &[u8]) {
        let doomed: Vec<Vec<u8>> = self
            .sizes
            .keys()
            .filter(|k| within(k, root))
            .cloned()
            .collect();
        for key in doomed {
            if let Some(len) = self.sizes.remove(&key) {
                self.total -= len;
            }
        }
    }

    fn rename_tree(&mut self, from: &[u8], to: &[u8]) {
        self.forget_tree(to);
        let moving: Vec<Vec<u8>> = self
            .sizes
            .keys()
            .filter(|k| within(k, from))
            .cloned()
            .collect();
        for old in moving {
            if let Some(len) = self.sizes.remove(&old) {
                let mut new = to.to_vec();
                new.extend_from_slice(&old[from.len()..]);
                self.sizes.insert(new, len);
            }
        }
    }
}

fn within(path: &[u8], root: &[u8]) -> bool {
    path == root || (path.starts_with(root) && path.get(root.len()) == Some(&b'/'))
}

/// Builds a `DavPath` from raw (decoded) path bytes.
pub fn dav_path(raw: &[u8]) -> FsResult<DavPath> {
    let mut encoded = String::with_capacity(raw.len() + 8);
    for &b in raw {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    DavPath::new(&encoded).map_err(|_| FsError::GeneralFailure)
}

/// The in-memory store for Finder metadata files.
#[derive(Clone)]
pub struct Overlay {
    fs: MemFs,
    usage: Arc<Mutex<Usage>>,
    limit: u64,
}

impl Overlay {
    /// An empty store that holds at most `limit` bytes of file data.
    pub fn new(limit: u64) -> Self {
        Overlay {
            fs: *MemFs::new(),
            usage: Arc::new(Mutex::new(Usage::default())),
            limit,
        }
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes of file data held.
    pub fn bytes(&self) -> u64 {
        self.usage().total
    }

    /// Creates `dir` and its ancestors in the memory tree (the real tree was checked).
    async fn ensure_dirs(&self, dir: &[u8]) -> FsResult<()> {
        let mut prefix = Vec::with_capacity(dir.len());
        for seg in dir.split(|&b| b == b'/').filter(|s| !s.is_empty()) {
            prefix.push(b'/');
            prefix.extend_from_slice(seg);
            let mut as_dir = prefix.clone();
            as_dir.push(b'/');
            match self.fs.create_dir(&dav_path(&as_dir)?).await {
                Ok(()) | Err(FsError::Exists) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Opens a metadata file; with `create`, its parent directory must exist in the real tree
    /// (`parent_exists`), as for any other file.
    pub async fn open(
        &self,
        path: &DavPath,
        options: OpenOptions,
        parent_exists: bool,
    ) -> FsResult<Box<dyn DavFile>> {
        let key = normalize(path.as_bytes());
        if options.create || options.create_new {
            if !parent_exists {
                return Err(FsError::NotFound);
            }
            self.ensure_dirs(path.parent().as_bytes()).await?;
        }
        let append = options.append;
        let truncate = options.truncate;
        let mut inner = self.fs.open(path, options).await?;
        let len = inner.metadata().await?.len();
        if truncate || !self.usage().sizes.contains_key(&key) {
            self.usage().set(key.clone(), len);
        }
        Ok(Box::new(HeldFile {
            inner,
            key,
            pos: 0,
            append,
            usage: self.usage.clone(),
            limit: self.limit,
        }))
    }

    /// Metadata of a held file or directory.
    pub async fn metadata(&self, path: &DavPath) -> FsResult<Box<dyn DavMetaData>> {
        self.fs.metadata(path).await
    }

    /// The Finder metadata entries of directory `path` (empty if it holds none).
    pub async fn entries(&self, path: &DavPath) -> FsStream<Box<dyn DavDirEntry>> {
        match self.fs.read_dir(path, ReadDirMeta::Data).await {
            Ok(stream) => Box::pin(stream.filter(|entry| {
                let keep = match entry {
                    Ok(e) => is_finder_metadata(&e.name()),
                    Err(_) => false,
                };
                std::future::ready(keep)
            })),
            Err(_) => Box::pin(futures_util::stream::empty()),
        }
    }

    /// Lists a directory that itself has a Finder metadata name (all of it lives here).
    pub async fn read_dir(&self, path: &DavPath) -> FsResult<FsStream<Box<dyn DavDirEntry>>> {
        self.fs.read_dir(path, ReadDirMeta::Data).await
    }

    /// Creates a directory with a Finder metadata name.
    pub async fn create_dir(&self, path: &DavPath, parent_exists: bool) -> FsResult<()> {
        if !parent_exists {
            return Err(FsError::NotFound);
        }
        self.ensure_dirs(path.parent().as_bytes()).await?;
        self.fs.create_dir(path).await
    }

    /// Removes a held file.
    pub async fn remove_file(&self, path: &DavPath) -> FsResult<()> {
        self.fs.remove_file(path).await?;
        self.usage().forget_tree(&normalize(path.as_bytes()));
        Ok(())
    }

    /// Removes an (empty) held directory.
    pub async fn remove_dir(&self, path: &DavPath) -> FsResult<()> {
        self.fs.remove_dir(path).await?;
        self.usage().forget_tree(&normalize(path.as_bytes()));
        Ok(())
    }

    /// After a real directory was removed: drop its mirror here, if any. The DELETE handler
    /// has already removed the held files it listed, so this only finds an empty directory.
    pub async fn forget_dir(&self, path: &DavPath) {
        match self.fs.remove_dir(path).await {
            Ok(()) | Err(FsError::NotFound) => {}
            Err(e) => tracing::debug!(?path, "in-memory metadata directory kept: {e}"),
        }
        self.usage().forget_tree(&normalize(path.as_bytes()));
    }

    /// Renames held files or directories (both names are Finder metadata names, or both are
    /// real directories whose mirror moves along: `must_exist` false).
    pub async fn rename(&self, from: &DavPath, to: &DavPath, must_exist: bool) -> FsResult<()> {
        if !must_exist && self.fs.metadata(from).await.is_err() {
            return Ok(());
        }
        self.ensure_dirs(to.parent().as_bytes()).await?;
        self.fs.rename(from, to).await?;
        self.usage()
            .rename_tree(&normalize(from.as_bytes()), &normalize(to.as_bytes()));
        Ok(())
    }

    /// Copies a held file (COPY of a collection calls this for each held file in it).
    pub async fn copy(&self, from: &DavPath, to: &DavPath, parent_exists: bool) -> FsResult<()> {
        if !parent_exists {
            return Err(FsError::NotFound);
        }
        let len = self.fs.metadata(from).await?.len();
        let to_key = normalize(to.as_bytes());
        {
            let usage = self.usage();
            if usage.total - usage.get(&to_key) + len > self.limit {
                return Err(FsError::InsufficientStorage);
            }
        }
        self.ensure_dirs(to.parent().as_bytes()).await?;
        self.fs.copy(from, to).await?;
        self.usage().set(to_key, len);
        Ok(())
    }
}

/// A held file: `MemFs`'s file with the memory accounting in front of every write.
#[derive(Debug)]
struct HeldFile {
    inner: Box<dyn DavFile>,
    key: Vec<u8>,
    pos: u64,
    append: bool,
    usage: Arc<Mutex<Usage>>,
    limit: u64,
}

impl std::fmt::Debug for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Usage({} files, {} bytes)", self.sizes.len(), self.total)
    }
}

impl HeldFile {
    /// Checks the limit for writing `n` bytes at the current position, and books the new size.
    fn reserve(&mut self, n: usize) -> FsResult<()> {
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let len = usage.get(&self.key);
        let start = if self.append { len } else { self.pos };
        let end = start.checked_add(n as u64).ok_or(FsError::TooLarge)?;
        let new_len = len.max(end);
        if usage.total - len + new_len > self.limit {
            tracing::warn!(
                file = %String::from_utf8_lossy(&self.key),
                limit = self.limit,
                "Finder metadata file refused: the in-memory store is full (--metadata-limit-mib)"
            );
            return Err(FsError::InsufficientStorage);
        }
        usage.set(self.key.clone(), new_len);
        self.pos = end;
        Ok(())
    }
}

impl DavFile for HeldFile {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        self.inner.metadata()
    }

    fn write_buf(&mut self, buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        async move {
            self.reserve(buf.remaining())?;
            self.inner.write_buf(buf).await
        }
        .boxed()
    }

    fn write_bytes(&mut self, buf: Bytes) -> FsFuture<'_, ()> {
        async move {
            self.reserve(buf.len())?;
            self.inner.write_bytes(buf).await
        }
        .boxed()
    }

    fn read_bytes(&mut self, count: usize) -> FsFuture<'_, Bytes> {
        async move {
            let data = self.inner.read_bytes(count).await?;
            self.pos += data.len() as u64;
            Ok(data)
        }
        .boxed()
    }

    fn seek(&mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        async move {
            let at = self.inner.seek(pos).await?;
            self.pos = at;
            Ok(at)
        }
        .boxed()
    }

    fn flush(&mut self) -> FsFuture<'_, ()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create() -> OpenOptions {
        OpenOptions {
            write: true,
            create: true,
            truncate: true,
            ..OpenOptions::default()
        }
    }

    #[tokio::test]
    async fn holds_files_within_the_limit() {
        let overlay = Overlay::new(100);
        let p = dav_path(b"/a/b/._x").unwrap();
        let mut f = overlay.open(&p, create(), true).await.unwrap();
        f.write_bytes(Bytes::from(vec![1u8; 60])).await.unwrap();
        assert_eq!(overlay.bytes(), 60);
        let q = dav_path(b"/a/.DS_Store").unwrap();
        let mut g = overlay.open(&q, create(), true).await.unwrap();
        assert_eq!(
            g.write_bytes(Bytes::from(vec![2u8; 41])).await,
            Err(FsError::InsufficientStorage)
        );
        g.write_bytes(Bytes::from(vec![2u8; 40])).await.unwrap();
        assert_eq!(overlay.bytes(), 100);
        overlay.remove_file(&p).await.unwrap();
        assert_eq!(overlay.bytes(), 40);
        // Re-opening with truncate gives the bytes back.
        let _g = overlay.open(&q, create(), true).await.unwrap();
        assert_eq!(overlay.bytes(), 0);
    }

    #[tokio::test]
    async fn a_far_offset_is_refused_before_allocating() {
        let overlay = Overlay::new(1 << 20);
        let p = dav_path(b"/._big").unwrap();
        let mut f = overlay.open(&p, create(), true).await.unwrap();
        f.seek(SeekFrom::Start(10 << 30)).await.unwrap();
        assert_eq!(
            f.write_bytes(Bytes::from_static(b"x")).await,
            Err(FsError::InsufficientStorage)
        );
        assert_eq!(overlay.bytes(), 0);
    }

    #[tokio::test]
    async fn no_parent_no_file() {
        let overlay = Overlay::new(1 << 20);
        let p = dav_path(b"/missing/._x").unwrap();
        assert_eq!(
            overlay.open(&p, create(), false).await.err(),
            Some(FsError::NotFound)
        );
    }

    #[tokio::test]
    async fn mirror_moves_with_its_directory() {
        let overlay = Overlay::new(1 << 20);
        let p = dav_path(b"/d/._x").unwrap();
        let mut f = overlay.open(&p, create(), true).await.unwrap();
        f.write_bytes(Bytes::from_static(b"abc")).await.unwrap();
        overlay
            .rename(
                &dav_path(b"/d/").unwrap(),
                &dav_path(b"/e/").unwrap(),
                false,
            )
            .await
            .unwrap();
        let moved = dav_path(b"/e/._x").unwrap();
        assert_eq!(overlay.metadata(&moved).await.unwrap().len(), 3);
        assert_eq!(overlay.bytes(), 3);
        // A real directory without a mirror: nothing to do.
        overlay
            .rename(
                &dav_path(b"/n/").unwrap(),
                &dav_path(b"/m/").unwrap(),
                false,
            )
            .await
            .unwrap();
        let names: Vec<Vec<u8>> = overlay
            .entries(&dav_path(b"/e/").unwrap())
            .await
            .map(|e| e.unwrap().name())
            .collect()
            .await;
        assert_eq!(names, vec![b"._x".to_vec()]);
    }

    #[test]
    fn paths_are_encoded() {
        let p = dav_path("/a b/é%/._x".as_bytes()).unwrap();
        assert_eq!(p.as_bytes(), "/a b/é%/._x".as_bytes());
    }
}
