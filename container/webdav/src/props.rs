//! Dead properties (PROPPATCH) kept in memory.
//!
//! dav-server's LocalFs has no property store, so PROPPATCH answers 501 and litmus' props and
//! locks suites fail. Storing them next to the files (as Apache's `.DAV/` directories do) would
//! put extra objects in the bucket; NFS extended attributes are not available on S3 Files. So
//! they live here, in memory, keyed by path: they survive MOVE and COPY through this server,
//! and are lost on restart. Finder does not use dead properties (it writes `._*` files);
//! Windows Explorer sets a few timestamps, which the files themselves also carry.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use dav_server::fs::{DavProp, FsError, FsResult};
use http::StatusCode;

/// (namespace, name): what identifies a property.
type PropKey = (String, String);

/// All dead properties, by normalized path (no trailing `/`, except the root `/`).
pub struct PropStore {
    inner: Mutex<Inner>,
    limit_bytes: usize,
}

#[derive(Default)]
struct Inner {
    by_path: HashMap<Vec<u8>, BTreeMap<PropKey, DavProp>>,
    bytes: usize,
}

fn prop_key(p: &DavProp) -> PropKey {
    (p.namespace.clone().unwrap_or_default(), p.name.clone())
}

fn prop_size(p: &DavProp) -> usize {
    p.name.len()
        + p.namespace.as_ref().map_or(0, String::len)
        + p.prefix.as_ref().map_or(0, String::len)
        + p.xml.as_ref().map_or(0, Vec::len)
}

/// The property without its value (what PROPFIND `propname` and PROPPATCH replies carry).
fn name_only(p: &DavProp) -> DavProp {
    DavProp {
        xml: None,
        ..p.clone()
    }
}

/// `/a/b/` and `/a/b` name the same resource.
pub fn normalize(path: &[u8]) -> Vec<u8> {
    match path.strip_suffix(b"/") {
        Some(stripped) if !stripped.is_empty() => stripped.to_vec(),
        _ if path.is_empty() => b"/".to_vec(),
        _ => path.to_vec(),
    }
}

/// True if `path` is `root` or lies below it (both normalized).
fn is_within(path: &[u8], root: &[u8]) -> bool {
    if root == b"/" {
        return true;
    }
    path == root || (path.starts_with(root) && path.get(root.len()) == Some(&b'/'))
}

impl Inner {
    fn remove_tree(&mut self, root: &[u8]) {
        let doomed: Vec<Vec<u8>> = self
            .by_path
            .keys()
            .filter(|k| is_within(k, root))
            .cloned()
            .collect();
        for key in doomed {
            if let Some(props) = self.by_path.remove(&key) {
                self.bytes -= props.values().map(prop_size).sum::<usize>();
            }
        }
    }
}

impl PropStore {
    /// A store that refuses PROPPATCH with 507 once `limit_bytes` of properties are held.
    pub fn new(limit_bytes: usize) -> Self {
        PropStore {
            inner: Mutex::new(Inner::default()),
            limit_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain maps behind; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a PROPPATCH: `(true, prop)` sets, `(false, prop)` removes. All or nothing: over
    /// the memory limit nothing changes and every property gets 507 Insufficient Storage.
    pub fn patch(&self, path: &[u8], patch: Vec<(bool, DavProp)>) -> Vec<(StatusCode, DavProp)> {
        let key = normalize(path);
        let mut inner = self.lock();
        let current = inner.by_path.get(&key);
        let mut delta: isize = 0;
        for (set, p) in &patch {
            let old = current
                .and_then(|m| m.get(&prop_key(p)))
                .map_or(0, prop_size);
            let new = if *set { prop_size(p) } else { 0 };
            delta += new as isize - old as isize;
        }
        if delta > 0 && inner.bytes + delta as usize > self.limit_bytes {
            tracing::warn!(
                limit = self.limit_bytes,
                "PROPPATCH refused: the in-memory property store is full (--props-limit-kib)"
            );
            return patch
                .iter()
                .map(|(_, p)| (StatusCode::INSUFFICIENT_STORAGE, name_only(p)))
                .collect();
        }
        let mut result = Vec::with_capacity(patch.len());
        let props = inner.by_path.entry(key.clone()).or_default();
        for (set, p) in patch {
            let reply = name_only(&p);
            if set {
                props.insert(prop_key(&p), p);
            } else {
                // Removing a property that does not exist succeeds (RFC 4918 §9.2).
                props.remove(&prop_key(&p));
            }
            result.push((StatusCode::OK, reply));
        }
        if props.is_empty() {
            inner.by_path.remove(&key);
        }
        inner.bytes = (inner.bytes as isize + delta) as usize;
        result
    }

    /// Every dead property of `path`, with values if `with_values`.
    pub fn get_all(&self, path: &[u8], with_values: bool) -> Vec<DavProp> {
        let inner = self.lock();
        inner
            .by_path
            .get(&normalize(path))
            .map(|m| {
                m.values()
                    .map(|p| if with_values { p.clone() } else { name_only(p) })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value (raw XML) of one property.
    pub fn get(&self, path: &[u8], prop: &DavProp) -> FsResult<Vec<u8>> {
        let inner = self.lock();
        inner
            .by_path
            .get(&normalize(path))
            .and_then(|m| m.get(&prop_key(prop)))
            .and_then(|p| p.xml.clone())
            .ok_or(FsError::NotFound)
    }

    /// Forgets `path` and everything below it (DELETE).
    pub fn remove_tree(&self, path: &[u8]) {
        self.lock().remove_tree(&normalize(path));
    }

    /// Moves the properties of `from` and everything below it to `to` (MOVE); what `to` had
    /// is dropped, as the resource it belonged to was replaced.
    pub fn rename_tree(&self, from: &[u8], to: &[u8]) {
        let (from, to) = (normalize(from), normalize(to));
        let mut inner = self.lock();
        inner.remove_tree(&to);
        let moving: Vec<Vec<u8>> = inner
            .by_path
            .keys()
            .filter(|k| is_within(k, &from))
            .cloned()
            .collect();
        for old in moving {
            if let Some(props) = inner.by_path.remove(&old) {
                let mut new = to.clone();
                new.extend_from_slice(&old[from.len()..]);
                inner.by_path.insert(new, props);
            }
        }
    }

    /// Copies the properties of one resource (COPY calls this per file and directory). A copy
    /// over the memory limit is made without properties (the data copy matters more).
    pub fn copy_one(&self, from: &[u8], to: &[u8]) {
        let (from, to) = (normalize(from), normalize(to));
        let mut inner = self.lock();
        inner.remove_tree(&to);
        let Some(props) = inner.by_path.get(&from).cloned() else {
            return;
        };
        let size: usize = props.values().map(prop_size).sum();
        if inner.bytes + size > self.limit_bytes {
            tracing::warn!("COPY: properties not copied, the in-memory property store is full");
            return;
        }
        inner.bytes += size;
        inner.by_path.insert(to, props);
    }

    /// Bytes held (names, namespaces and values).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(name: &str, value: &str) -> DavProp {
        DavProp::new(
            name.into(),
            "z".into(),
            "http://example.com/ns".into(),
            value.into(),
        )
    }

    #[test]
    fn set_get_remove() {
        let store = PropStore::new(1 << 20);
        let r = store.patch(b"/a/", vec![(true, prop("x", "1")), (true, prop("y", "2"))]);
        assert!(
            r.iter()
                .all(|(s, p)| *s == StatusCode::OK && p.xml.is_none())
        );
        assert_eq!(store.get_all(b"/a", true).len(), 2);
        assert!(store.get_all(b"/a", false).iter().all(|p| p.xml.is_none()));
        let xml = store.get(b"/a", &prop("x", "")).unwrap();
        assert!(String::from_utf8(xml).unwrap().contains(">1<"));
        store.patch(
            b"/a",
            vec![(false, prop("x", "")), (false, prop("nope", ""))],
        );
        assert_eq!(store.get(b"/a", &prop("x", "")), Err(FsError::NotFound));
        store.patch(b"/a", vec![(false, prop("y", ""))]);
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn limit_is_all_or_nothing() {
        let store = PropStore::new(100);
        let r = store.patch(b"/f", vec![(true, prop("a", "1")), (true, prop("b", "2"))]);
        assert!(
            r.iter()
                .all(|(s, _)| *s == StatusCode::INSUFFICIENT_STORAGE)
        );
        assert_eq!(store.bytes(), 0);
        assert!(store.get_all(b"/f", false).is_empty());
        let r = store.patch(b"/f", vec![(true, prop("a", "1"))]);
        assert_eq!(r[0].0, StatusCode::OK);
        // Replacing a value with one of the same size fits.
        let r = store.patch(b"/f", vec![(true, prop("a", "2"))]);
        assert_eq!(r[0].0, StatusCode::OK);
    }

    #[test]
    fn rename_moves_the_subtree_only() {
        let store = PropStore::new(1 << 20);
        for p in [&b"/d"[..], b"/d/f", b"/d/e/g", b"/dd", b"/x"] {
            store.patch(p, vec![(true, prop("k", "v"))]);
        }
        store.rename_tree(b"/d/", b"/x");
        for p in [&b"/x"[..], b"/x/f", b"/x/e/g", b"/dd"] {
            assert_eq!(
                store.get_all(p, false).len(),
                1,
                "{}",
                String::from_utf8_lossy(p)
            );
        }
        assert!(store.get_all(b"/d", false).is_empty());
        assert!(store.get_all(b"/d/f", false).is_empty());
    }

    #[test]
    fn remove_and_copy() {
        let store = PropStore::new(1 << 20);
        store.patch(b"/d/f", vec![(true, prop("k", "v"))]);
        store.copy_one(b"/d/f", b"/g");
        assert_eq!(store.get_all(b"/g", true).len(), 1);
        let before = store.bytes();
        store.remove_tree(b"/d");
        assert!(store.get_all(b"/d/f", false).is_empty());
        assert!(store.bytes() < before);
        store.remove_tree(b"/");
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize(b"/"), b"/");
        assert_eq!(normalize(b""), b"/");
        assert_eq!(normalize(b"/a/"), b"/a");
        assert_eq!(normalize(b"/a"), b"/a");
        assert!(is_within(b"/a/b", b"/a"));
        assert!(!is_within(b"/ab", b"/a"));
    }
}
