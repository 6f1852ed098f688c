//! Keeping every file operation inside `--root`, whatever symbolic links the tree holds.
//!
//! dav-server's `LocalFs` joins the request path to the root and lets the kernel follow any
//! symbolic link on the way. Another NFS client of the file system can create a link in the
//! bucket (`ln -s /root/.aws creds`), and the server runs as root next to the container's
//! `~/.aws`: following it would read or write outside the served tree. So before an operation
//! the path is resolved here, and a link whose target lies outside the (canonical) root, or that
//! cannot be resolved at all (dangling, a loop), is refused with 403. Links that stay inside the
//! root keep working.
//!
//! The check and the operation are two steps: an NFS client that swaps a directory for a link
//! between them could still win that race. `efs-webdav --chroot` (the container's setting)
//! closes it for the whole process: after chroot(2) to the root, the kernel resolves every
//! path inside it, and this check runs against `/`. Closing it without chroot would need
//! `openat2(RESOLVE_BENEATH)` for every operation, which `LocalFs` does not do.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Why a path is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// A symbolic link on the path points outside the root, dangles, or loops.
    Escapes,
    /// Another error reading the tree (permission, I/O).
    Io(ErrorKind),
}

/// Resolves `root/rel` (`root` canonical, `rel` relative without `..`) following symbolic
/// links, and returns the resolved path if it lies inside `root`.
///
/// A path that does not exist yet (a PUT or MKCOL target) resolves through its nearest
/// existing ancestor, plus the missing names: what the operation will create. A last name that
/// exists only as a dangling link is refused, as creating through it would create its target.
pub fn resolve(root: &Path, rel: &Path) -> Result<PathBuf, Refused> {
    let full = root.join(rel);
    if !full.starts_with(root) {
        return Err(Refused::Escapes);
    }
    resolve_full(root, &full)
}

fn resolve_full(root: &Path, full: &Path) -> Result<PathBuf, Refused> {
    match std::fs::canonicalize(full) {
        Ok(real) if real.starts_with(root) => Ok(real),
        Ok(_) => Err(Refused::Escapes),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            if std::fs::symlink_metadata(full).is_ok() {
                // It exists, yet cannot be resolved: a dangling link (or one through a file).
                return Err(Refused::Escapes);
            }
            let (Some(parent), Some(name)) = (full.parent(), full.file_name()) else {
                return Err(Refused::Io(e.kind()));
            };
            if full == root || !parent.starts_with(root) {
                return Err(Refused::Io(e.kind()));
            }
            Ok(resolve_full(root, parent)?.join(name))
        }
        // ELOOP: a link cycle.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            Err(Refused::Escapes)
        }
        Err(e) => Err(Refused::Io(e.kind())),
    }
}

/// Resolves the parent of `root/rel`, keeping its last name unresolved: for operations that act
/// on a link itself rather than on its target (lstat, unlink, rmdir, rename).
pub fn resolve_parent(root: &Path, rel: &Path) -> Result<PathBuf, Refused> {
    let full = root.join(rel);
    match (full.parent(), full.file_name()) {
        (Some(parent), Some(name)) if full != root && parent.starts_with(root) => {
            Ok(resolve_full(root, parent)?.join(name))
        }
        _ => resolve(root, rel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_inside_resolve_links_outside_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        let root = base.join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/f"), b"x").unwrap();
        std::fs::write(base.join("secret"), b"s").unwrap();
        symlink(root.join("d/f"), root.join("in")).unwrap();
        symlink("d", root.join("dir-in")).unwrap();
        symlink(base.join("secret"), root.join("out")).unwrap();
        symlink(&base, root.join("dir-out")).unwrap();
        symlink(base.join("nowhere"), root.join("dangling")).unwrap();
        symlink("loop", root.join("loop")).unwrap();

        assert_eq!(resolve(&root, Path::new("in")), Ok(root.join("d/f")));
        assert_eq!(
            resolve(&root, Path::new("dir-in/new")),
            Ok(root.join("d/new"))
        );
        assert_eq!(resolve(&root, Path::new("")), Ok(root.clone()));
        assert_eq!(resolve(&root, Path::new("a/b/c")), Ok(root.join("a/b/c")));
        for bad in [
            "out",
            "dir-out",
            "dir-out/secret",
            "dir-out/new",
            "dangling",
            "loop",
        ] {
            assert_eq!(
                resolve(&root, Path::new(bad)),
                Err(Refused::Escapes),
                "{bad}"
            );
        }
        // The link itself, for unlink: its parent is inside.
        assert_eq!(
            resolve_parent(&root, Path::new("out")),
            Ok(root.join("out"))
        );
        assert_eq!(
            resolve_parent(&root, Path::new("dir-out/secret")),
            Err(Refused::Escapes)
        );
    }
}
