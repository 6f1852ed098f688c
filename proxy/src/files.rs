//! Files written or trusted as root: the drop-in pid file and log file, private key files, and
//! text from the server on its way to a log.
//!
//! The proxy usually runs as root in directories other users may write to (`/var/run/efs`,
//! `/var/log/amazon/efs`), so a file it writes is opened without following a symbolic link
//! (`O_NOFOLLOW`) and only if it is a regular file with one name (no planted hard link), and
//! a key file it reads is checked the way ssh checks one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the pid file and the log files: efs-proxy creates both 0644 (log4rs and its pid
/// file write), as every efs-utils log; neither holds a secret.
pub(crate) const PUBLIC_FILE_MODE: u32 = 0o644;

/// Opens `path` for writing without following a symbolic link at it, creating it with `mode`
/// if missing. An existing file is accepted only if it is a regular file with one link, owned
/// by this process's effective uid; `truncate` empties it, else writes append.
pub(crate) fn open_for_writing(path: &Path, mode: u32, truncate: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .append(!truncate)
        .create(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => refused(path, "it is a symbolic link"),
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(refused(path, "it is not a regular file"));
    }
    if meta.nlink() > 1 {
        return Err(refused(path, "it has other hard links"));
    }
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(refused(
            path,
            &format!(
                "it is owned by uid {}, not by this process (uid {euid})",
                meta.uid()
            ),
        ));
    }
    if truncate {
        file.set_len(0)?;
    }
    Ok(file)
}

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "refusing to write {}: {why} (someone may have planted it to make this process \
             overwrite another file); remove it and start again",
            path.display()
        ),
    )
}

/// Writes `"<pid>\n"` to the pid file (see `open_for_writing`).
pub fn write_pid_file(path: &Path) -> io::Result<()> {
    let mut file = open_for_writing(path, PUBLIC_FILE_MODE, true)?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
}

/// What is wrong with the ownership or mode of a private key file, as ssh would say it, or
/// `None` when only its owner can read it. The proxy warns and goes on (AWS's proxy loads any
/// key file, and a host that works with it must keep working with this one).
pub(crate) fn key_file_problem(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.permissions().mode() & 0o777;
    let euid = rustix::process::geteuid().as_raw();
    let mut problems = Vec::new();
    if mode & 0o077 != 0 {
        problems.push(format!(
            "its mode {mode:04o} lets other users read or change it (fix: chmod 600 {})",
            path.display()
        ));
    }
    if meta.uid() != euid {
        problems.push(format!(
            "it is owned by uid {}, not by this process's uid {euid}, so that user can replace it \
             (fix: chown {euid} {})",
            meta.uid(),
            path.display()
        ));
    }
    (!problems.is_empty()).then(|| {
        format!(
            "private key {}: {}; anyone who can read it can use this host's client certificate",
            path.display(),
            problems.join("; ")
        )
    })
}

/// Logs [`key_file_problem`] as a warning, if any.
pub(crate) fn warn_about_key_file(path: &Path) {
    if let Some(problem) = key_file_problem(path) {
        tracing::warn!("{problem}");
    }
}

/// `text` with every control character (newlines, escape sequences, C1 controls) escaped as
/// `\n`, `\u{1b}` …, so a string from the server is one log line and cannot move a
/// terminal's cursor. Other characters, non-ASCII included, are kept.
pub(crate) fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_symbolic_link_is_not_followed_and_its_target_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let pid = dir.path().join("stunnel.pid");
        symlink(&victim, &pid).unwrap();
        let err = write_pid_file(&pid).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
        assert!(err.contains("stunnel.pid"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    }

    #[test]
    fn a_hard_link_is_refused_and_a_stale_pid_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let pid = dir.path().join("stunnel.pid");
        std::fs::hard_link(&victim, &pid).unwrap();
        let err = write_pid_file(&pid).unwrap_err().to_string();
        assert!(err.contains("other hard links"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");

        std::fs::remove_file(&pid).unwrap();
        std::fs::write(&pid, "999999999\n").unwrap();
        write_pid_file(&pid).unwrap();
        let text = std::fs::read_to_string(&pid).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
    }

    #[test]
    fn a_new_pid_file_gets_mode_0644_under_umask() {
        let dir = tempfile::tempdir().unwrap();
        let pid = dir.path().join("p.pid");
        write_pid_file(&pid).unwrap();
        let mode = std::fs::metadata(&pid).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o644, 0, "{mode:o}");
    }

    #[test]
    fn key_files_readable_by_others_are_reported_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        std::fs::write(&key, "x").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(key_file_problem(&key), None);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let problem = key_file_problem(&key).unwrap();
        assert!(problem.contains("mode 0644"), "{problem}");
        assert!(problem.contains("chmod 600"), "{problem}");
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("plain é"), "plain é");
        assert_eq!(
            escape_controls("a\nb\r\u{1b}[2Jc\u{85}"),
            "a\\nb\\r\\u{1b}[2Jc\\u{85}"
        );
    }
}
