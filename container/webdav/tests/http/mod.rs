//! A small blocking HTTP/1.1 client and a runner for the `efs-webdav` binary, for the
//! integration tests. Hand-written on purpose: the tests control framing exactly (Finder's
//! chunked PUT with `X-Expected-Entity-Length`), which a full client library would hide.
//! Several test files include this module, and each uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How the request body is framed.
pub(crate) enum Body<'a> {
    None,
    Fixed(&'a [u8]),
    /// Chunked, in chunks of the given size (as Finder sends uploads).
    Chunked(&'a [u8], usize),
}

/// One request on a fresh connection.
pub(crate) fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Body<'_>,
) -> Reply {
    request_to(addr, Some(&addr.to_string()), method, path, headers, body)
}

/// One request on a fresh connection, with the given Host header (or none).
pub(crate) fn request_to(
    addr: SocketAddr,
    host: Option<&str>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Body<'_>,
) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect to the WebDAV server");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("read timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if let Some(host) = host {
        head.push_str(&format!("Host: {host}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match body {
        Body::None => head.push_str("Content-Length: 0\r\n"),
        Body::Fixed(data) => head.push_str(&format!("Content-Length: {}\r\n", data.len())),
        Body::Chunked(..) => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send head");
    match body {
        Body::None => {}
        Body::Fixed(data) => stream.write_all(data).expect("send body"),
        Body::Chunked(data, size) => {
            for chunk in data.chunks(size) {
                write!(stream, "{:x}\r\n", chunk.len()).expect("chunk size");
                stream.write_all(chunk).expect("chunk");
                stream.write_all(b"\r\n").expect("chunk end");
            }
            stream.write_all(b"0\r\n\r\n").expect("last chunk");
        }
    }
    read_reply(&mut BufReader::new(stream), method == "HEAD")
}

/// Reads one answer (status line, headers, body).
pub(crate) fn read_reply(r: &mut impl BufRead, head_only: bool) -> Reply {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if head_only || status == 204 || status == 304 {
        // no body
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            r.read_line(&mut line).expect("chunk size line");
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .expect("chunk size");
            if size == 0 {
                // trailers, then the empty line
                loop {
                    line.clear();
                    if r.read_line(&mut line).expect("trailer") == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).expect("chunk data");
            line.clear();
            r.read_line(&mut line).expect("chunk CRLF");
        }
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().expect("content-length");
        body.resize(len, 0);
        r.read_exact(&mut body).expect("body");
    } else {
        r.read_to_end(&mut body).expect("body to EOF");
    }
    Reply {
        status,
        headers,
        body,
    }
}

/// The server binary, stopped (SIGKILL) on drop.
pub(crate) struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// Where its stderr goes, if captured ([`start_logged`]).
    pub log: Option<tempfile::NamedTempFile>,
}

impl Server {
    /// What it logged so far (empty if stderr was not captured).
    pub(crate) fn log(&self) -> String {
        self.log
            .as_ref()
            .map(|f| std::fs::read_to_string(f.path()).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Open file descriptors of the process (Linux /proc).
    pub(crate) fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .expect("/proc/PID/fd")
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `efs-webdav --listen 127.0.0.1:0 --root ROOT [extra...]` and waits for its
/// `listening on` line.
pub(crate) fn start(root: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    launch(root, "127.0.0.1:0", extra, env, false)
}

/// Like [`start`] on `listen`, with stderr (the log) captured in a file.
pub(crate) fn start_logged(
    root: &Path,
    listen: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Server {
    launch(root, listen, extra, env, true)
}

fn launch(root: &Path, listen: &str, extra: &[&str], env: &[(&str, &str)], logged: bool) -> Server {
    let log = logged.then(|| tempfile::NamedTempFile::new().expect("log file"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_efs-webdav"));
    cmd.args(["--listen", listen, "--root"])
        .arg(root)
        .args(extra)
        .env_remove("WEBDAV_USER")
        .env_remove("WEBDAV_PASSWORD")
        .env_remove("WEBDAV_PUBLIC_PORT")
        .env_remove("WEBDAV_ALLOW_HOSTS")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped());
    match &log {
        Some(file) => cmd.stderr(Stdio::from(file.reopen().expect("log file"))),
        None => cmd.stderr(Stdio::inherit()),
    };
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn efs-webdav");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr: SocketAddr = loop {
        assert!(Instant::now() < deadline, "no 'listening on' line");
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(a) = line.strip_prefix("listening on ") {
                    break a.parse().expect("listen address");
                }
            }
            _ => panic!("efs-webdav exited before listening"),
        }
    };
    // A wildcard listen address is reached through loopback.
    let addr = SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port());
    Server { child, addr, log }
}

/// Polls `cond` every 20 ms for up to `secs` seconds.
pub(crate) fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Deterministic pseudo-random bytes (xorshift; fast in debug builds).
pub(crate) fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Every name below `dir`, relative, sorted: what the server left in the served directory.
pub(crate) fn all_names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}
