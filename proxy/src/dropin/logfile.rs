//! A log file rotated by size, like efs-proxy's log4rs setup: when the next line would pass
//! `max_bytes`, `LOG` becomes `LOG.0`, `LOG.0` becomes `LOG.1`, … and `LOG.{count-1}` is
//! dropped. (`tracing-appender` rotates only by time, hence this small writer.) Every open
//! refuses a symbolic link or a hard link planted at the path ([`open_for_writing`]).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;

use crate::files::{PUBLIC_FILE_MODE, open_for_writing};

/// A size-rotated log file, safe to share between threads.
pub struct RotatingFile {
    state: Mutex<State>,
}

struct State {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
    file_count: usize,
}

impl RotatingFile {
    /// Opens (appending to) `path`, creating its directory if needed.
    pub fn open(path: &Path, max_bytes: u64, file_count: usize) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_for_writing(path, PUBLIC_FILE_MODE, false)?;
        let written = file.metadata()?.len();
        Ok(RotatingFile {
            state: Mutex::new(State {
                path: path.to_path_buf(),
                file,
                written,
                max_bytes: max_bytes.max(1),
                file_count,
            }),
        })
    }
}

impl State {
    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        name.into()
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.file_count == 0 {
            self.file = open_for_writing(&self.path, PUBLIC_FILE_MODE, true)?;
        } else {
            let _ = std::fs::remove_file(self.rotated(self.file_count - 1));
            for n in (0..self.file_count - 1).rev() {
                let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
            }
            std::fs::rename(&self.path, self.rotated(0))?;
            self.file = open_for_writing(&self.path, PUBLIC_FILE_MODE, false)?;
        }
        self.written = 0;
        Ok(())
    }
}

impl Write for &RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.written > 0 && state.written + buf.len() as u64 > state.max_bytes {
            state.rotate()?;
        }
        state.file.write_all(buf)?;
        state.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.file.flush()
    }
}

impl<'a> MakeWriter<'a> for RotatingFile {
    type Writer = &'a RotatingFile;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_file_count_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.log");
        let log = RotatingFile::open(&path, 100, 3).unwrap();
        for i in 0..20 {
            (&log)
                .write_all(format!("line {i:02} {}\n", "x".repeat(30)).as_bytes())
                .unwrap();
        }
        // 40 bytes per line, 2 lines per file: the last 2 lines are current.
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.starts_with("line 18"), "{current}");
        assert!(
            std::fs::read_to_string(dir.path().join("proxy.log.0"))
                .unwrap()
                .starts_with("line 16")
        );
        assert!(
            std::fs::read_to_string(dir.path().join("proxy.log.2"))
                .unwrap()
                .starts_with("line 12")
        );
        assert!(!dir.path().join("proxy.log.3").exists());
    }

    #[test]
    fn a_log_path_that_is_a_symbolic_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("shadow");
        std::fs::write(&victim, "root:x:0:\n").unwrap();
        let path = dir.path().join("proxy.log");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let err = RotatingFile::open(&path, 100, 3).err().unwrap().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:x:0:\n");
    }
}
