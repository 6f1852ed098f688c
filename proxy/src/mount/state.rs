//! The per-mount state: one directory per mount under `/run/efs-proxy` (mode 0700, owned by
//! the user who mounted), files written atomically (a temporary file renamed over the old
//! one), never a secret: the options, the port, the pids and the live counters.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the state lives unless `EFS_PROXY_STATE_DIR` says otherwise (tests).
pub const DEFAULT_ROOT: &str = "/run/efs-proxy";

/// The state root: `EFS_PROXY_STATE_DIR` or `/run/efs-proxy`.
pub fn root() -> PathBuf {
    std::env::var_os("EFS_PROXY_STATE_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from)
}

fn refuse(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{}: {why}; refusing to keep mount state there",
            path.display()
        ),
    )
}

/// Checks that `path` is a real directory of ours that no one else can read or write.
pub fn check_private_dir(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(refuse(path, "not a directory (or a symbolic link)"));
    }
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(refuse(
            path,
            &format!("owned by uid {}, not {euid}", meta.uid()),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(refuse(
            path,
            &format!("mode {:o}, not 0700", meta.mode() & 0o777),
        ));
    }
    Ok(())
}

/// Creates the root (0700) if missing and checks it.
pub fn ensure_root(root: &Path) -> io::Result<()> {
    match DirBuilder::new().mode(0o700).recursive(false).create(root) {
        Ok(()) => fs::set_permissions(root, fs::Permissions::from_mode(0o700))?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = root.parent() {
                fs::create_dir_all(parent)?;
            }
            DirBuilder::new().mode(0o700).create(root)?;
        }
        Err(e) => return Err(e),
    }
    check_private_dir(root)
}

/// Creates a new mount directory (0700); fails if it exists.
pub fn create_mount_dir(root: &Path, name: &str) -> io::Result<PathBuf> {
    let dir = root.join(name);
    DirBuilder::new().mode(0o700).create(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// Writes `dir/name` atomically (mode 0600): a reader sees the old or the new text, never a
/// part.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    drop(file);
    fs::rename(&tmp, dir.join(name)).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// The mount directories under the root, sorted.
pub fn mount_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// Whether `pid` is a live (not zombie) process whose command line contains `marker` (its
/// state directory): a recycled pid is not mistaken for the proxy.
pub fn process_runs(pid: u32, marker: &str) -> bool {
    if pid == 0 {
        return false;
    }
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    if matches!(state, None | Some('Z' | 'X')) {
        return false;
    }
    fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmd| cmd.split(|b| *b == 0).any(|arg| arg == marker.as_bytes()))
}

/// Reads a pid file (`None` if missing or malformed).
pub fn read_pid(dir: &Path, name: &str) -> Option<u32> {
    fs::read_to_string(dir.join(name)).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_and_mount_dirs_are_private_and_files_atomic() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("run/efs-proxy");
        ensure_root(&root).unwrap();
        assert_eq!(fs::metadata(&root).unwrap().mode() & 0o777, 0o700);
        let dir = create_mount_dir(&root, "fs-1.20000").unwrap();
        assert!(create_mount_dir(&root, "fs-1.20000").is_err());
        write_atomic(&dir, "pid", b"12\n").unwrap();
        write_atomic(&dir, "pid", b"13\n").unwrap();
        assert_eq!(read_pid(&dir, "pid"), Some(13));
        assert_eq!(fs::metadata(dir.join("pid")).unwrap().mode() & 0o777, 0o600);
        assert_eq!(mount_dirs(&root), vec![dir.clone()]);
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn an_open_root_or_a_symlink_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        let e = ensure_root(&open).unwrap_err();
        assert!(e.to_string().contains("mode 755, not 0700"), "{e}");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&open, &link).unwrap();
        assert!(
            ensure_root(&link)
                .unwrap_err()
                .to_string()
                .contains("symbolic link")
        );
    }

    #[test]
    fn this_process_runs_and_a_made_up_pid_does_not() {
        let me = std::process::id();
        let cmd = fs::read(format!("/proc/{me}/cmdline")).unwrap();
        let arg0 = String::from_utf8_lossy(cmd.split(|b| *b == 0).next().unwrap()).into_owned();
        assert!(process_runs(me, &arg0));
        assert!(!process_runs(me, "/no/such/marker"));
        assert!(!process_runs(0, &arg0));
    }
}
