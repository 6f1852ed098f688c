//! `efs-bench`: the proxy against its baselines, one table per client pattern, in one run on
//! one machine.
//!
//! Forwarders, each in front of the same release-built fake mount target (bench responder:
//! READ replies of the asked size, tiny WRITE replies), each started afresh for every
//! measurement, in an order rotated from round to round:
//!
//! * `direct`: no forwarder (the floor);
//! * `socat`: a plain TCP forwarder with 128 KiB buffers (`-b 131072`, its best setting: the
//!   fair floor of a forwarder); `socat-8k`: its default 8 KiB buffer (client pattern `rust`
//!   only, for comparison with earlier runs);
//! * `stunnel`: a TLS client tunnel with the same certificates (TLS, no bind; TCP_NODELAY on
//!   both sockets);
//! * `efs-proxy`: TLS, client certificate and bind; and any `--baseline` builds of it.
//!
//! Client patterns (`--patterns`), one table each:
//!
//! * `rust`: the tokio client of `efs_proxy_tests::bench` (`write_all` per call, replies
//!   through `FramedRead`), 16 calls of 1 MiB in flight;
//! * `bulk`: a blocking client that writes each call in one `write` and reads replies with
//!   large reads into a buffer that grows to hold the record (the pattern of a Python
//!   `sendall` / `recv_into` client), 16 in flight;
//! * `trickle`: a blocking client that writes each call in 16 KiB pieces and reads replies
//!   4 KiB at a time (`--trickle-send`, `--trickle-recv`), 16 in flight;
//! * `conc4`, `conc16`: 4 and 16 connections of the `rust` client at once (`nconnect=4` or
//!   several mounts), `--conc-in-flight` calls each; totals;
//! * `libnfs`: a real user-space NFS client, `nfs-cp` (WRITE) and `nfs-cat` (READ) of
//!   Debian's libnfs-utils, copying a file of `--nfs-mib` to and from nfs-ganesha
//!   (`--nfs-server`, NFSv3: libnfs 4.0's NFSv4 WRITE fails to encode) through each
//!   forwarder; behind the forwarders the fake mount target relays to ganesha (TLS for
//!   stunnel and efs-proxy, plaintext for socat and direct). `tests/bench/run.sh` starts
//!   ganesha for it.
//!
//! Figures per pattern: WRITE and READ MiB/s (1 MiB calls), CPU seconds per GiB of the
//! forwarder process in each direction (from `/proc`, children included), its peak RSS, and
//! the p50/p99 of sequential 128-byte calls made with the pattern's client; for `rust` also
//! the first call (connect + TLS + bind), RSS idle and per idle connection. Ratios are the
//! medians of per-round ratios (each round measures every forwarder back to back), and each
//! target of issue 17 is checked per pattern: PASS or MISS.
//!
//! Before/after: `--baseline NAME=PATH` measures another `efs-proxy` binary in the same run;
//! `tests/bench/compare.sh REV` builds REV and does that.
//!
//! Run it with `tests/bench/run.sh` (release build).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use efs_proxy_tests::SERVER_NAME;
use efs_proxy_tests::bench::{self, Chunking, Flow};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Parser)]
#[command(
    name = "efs-bench",
    about = "efs-proxy against direct, socat and stunnel, one table per client pattern",
    // A later option wins (tests/bench/compare.sh passes defaults the caller can override).
    args_override_self = true
)]
struct Args {
    /// Seconds of each throughput measurement.
    #[arg(long, default_value_t = 2)]
    seconds: u64,
    /// Sequential calls of each latency measurement.
    #[arg(long, default_value_t = 2000)]
    calls: usize,
    /// Rounds: every forwarder is measured this many times per pattern, in rotated order;
    /// figures are medians, ratios medians of per-round ratios.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    rounds: u32,
    /// Client patterns: rust, bulk, trickle, conc4, conc16 (concN: N connections), libnfs.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rust,bulk,trickle,conc4,conc16,libnfs"
    )]
    patterns: Vec<String>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/efs-bench.json")]
    json: PathBuf,
    /// Skip the multiplexing curve.
    #[arg(long)]
    no_multiplex: bool,
    /// Measure only these forwarders (direct, socat, socat-8k, stunnel, efs-proxy); default:
    /// all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also measure another efs-proxy binary under this name (repeatable), e.g.
    /// `before=/tmp/efs-proxy-old`: before/after figures from one run.
    #[arg(long, value_name = "NAME=PATH", value_parser = parse_baseline)]
    baseline: Vec<(String, PathBuf)>,
    /// The trickling client writes calls in pieces of this many bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    trickle_send: usize,
    /// The trickling client reads replies this many bytes at a time.
    #[arg(long, default_value_t = 4 * 1024)]
    trickle_recv: usize,
    /// Calls in flight per connection of the concN patterns.
    #[arg(long, default_value_t = 4)]
    conc_in_flight: usize,
    /// libnfs: the NFS server (nfs-ganesha with NFSv3) the fake mount target relays to.
    #[arg(long, value_name = "ADDR")]
    nfs_server: Option<SocketAddr>,
    /// libnfs: the server's MOUNT port (the one MOUNT call goes there directly).
    #[arg(long, value_name = "PORT")]
    nfs_mount_port: Option<u16>,
    /// libnfs: the export's path, which is also its directory on this machine.
    #[arg(long, value_name = "DIR")]
    nfs_export: Option<PathBuf>,
    /// libnfs: MiB copied each way per measurement.
    #[arg(long, default_value_t = 1024)]
    nfs_mib: u64,
    /// libnfs: directory for the source file (a tmpfs, so the local disk is not measured).
    #[arg(long, default_value = "/dev/shm")]
    nfs_scratch: PathBuf,
    /// Count the forwarder's system calls, context switches and CPU time per GiB in each
    /// phase with `perf stat -p` (tracepoints: cheap enough not to change the figures much,
    /// and counts are not moved by the machine's load the way times are).
    #[arg(long)]
    profile: bool,
    /// A short run (1 round, 1 s, 256 MiB for libnfs, 500 latency calls, no multiplexing):
    /// checks the harness, not the figures.
    #[arg(long)]
    quick: bool,
}

fn parse_baseline(text: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PATH, got {text:?}"))?;
    let path = PathBuf::from(path);
    if name.is_empty() || !path.is_file() {
        return Err(format!(
            "{text:?}: expected NAME=PATH of an efs-proxy binary"
        ));
    }
    Ok((name.to_string(), path))
}

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;
const SIZE: usize = 1024 * 1024;
const IN_FLIGHT: usize = 16;

/// A client pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pattern {
    Rust,
    Bulk,
    Trickle,
    Conc(usize),
    Libnfs,
}

impl Pattern {
    fn parse(s: &str) -> anyhow::Result<Pattern> {
        Ok(match s {
            "rust" => Pattern::Rust,
            "bulk" => Pattern::Bulk,
            "trickle" => Pattern::Trickle,
            "libnfs" => Pattern::Libnfs,
            other => match other.strip_prefix("conc").and_then(|n| n.parse().ok()) {
                Some(n) if n >= 1 => Pattern::Conc(n),
                _ => bail!("unknown pattern {other:?} (rust, bulk, trickle, concN, libnfs)"),
            },
        })
    }

    fn name(&self) -> String {
        match self {
            Pattern::Rust => "rust".into(),
            Pattern::Bulk => "bulk".into(),
            Pattern::Trickle => "trickle".into(),
            Pattern::Conc(n) => format!("conc{n}"),
            Pattern::Libnfs => "libnfs".into(),
        }
    }

    fn describe(&self, args: &Args) -> String {
        match self {
            Pattern::Rust => "tokio client: write_all per call, FramedRead replies, 16 x 1 MiB in flight".into(),
            Pattern::Bulk => "blocking client: one write per 1 MiB call, large reads into a growing buffer, 16 in flight".into(),
            Pattern::Trickle => format!(
                "blocking client: calls written in {} KiB pieces, replies read {} KiB at a time, 16 x 1 MiB in flight",
                args.trickle_send / 1024,
                args.trickle_recv / 1024
            ),
            Pattern::Conc(n) => format!(
                "{n} connections of the tokio client at once, {} x 1 MiB in flight each; totals",
                args.conc_in_flight
            ),
            Pattern::Libnfs => format!(
                "libnfs-utils 4.0 (NFSv3): nfs-cp of a {} MiB file to nfs-ganesha (WRITE), nfs-cat back (READ), through the fake mount target's relay",
                args.nfs_mib
            ),
        }
    }

    fn chunking(&self, args: &Args) -> Option<Chunking> {
        match self {
            Pattern::Bulk => Some(Chunking::BULK),
            Pattern::Trickle => Some(Chunking {
                send: Some(args.trickle_send),
                recv: Some(args.trickle_recv),
            }),
            _ => None,
        }
    }
}

/// A child process killed on drop, with the address it serves.
struct Service {
    child: Child,
    addr: SocketAddr,
}

impl Service {
    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found: build with `cargo build --release --workspace --bins`",
            path.display()
        );
    }
    Ok(path)
}

/// Starts a program that prints `listening on ADDR` on stdout.
async fn announced(program: &Path, args: &[String]) -> anyhow::Result<Service> {
    let mut child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .context("no listening line")??
        .context("exited")?;
    let addr = line
        .strip_prefix("listening on ")
        .context("odd first line")?
        .parse()?;
    Ok(Service { child, addr })
}

/// Starts a program that listens on `addr` without saying so; waits for the port.
async fn listening(program: &str, args: &[String], addr: SocketAddr) -> anyhow::Result<Service> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {program} (apt-get install it)"))?;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(Service { child, addr });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("{program} did not listen on {addr}")
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// What the forwarders forward to: a TLS mount target (with its PKI) and a plaintext one.
struct Upstream {
    tls: SocketAddr,
    pki: PathBuf,
    plain: SocketAddr,
}

#[derive(Debug, Clone)]
enum Kind {
    Direct,
    Socat { buffer: usize },
    Stunnel,
    Proxy { bin: PathBuf },
}

#[derive(Debug, Clone)]
struct Forwarder {
    name: String,
    kind: Kind,
}

/// A forwarder started for one measurement.
struct Running {
    addr: SocketAddr,
    pid: Option<u32>,
    forks: bool,
    _service: Option<Service>,
}

fn proxy_args(target: SocketAddr, pki: &Path, scale: bool) -> Vec<String> {
    let s = |v: &str| v.to_string();
    let path = |p: PathBuf| p.display().to_string();
    let mut a = vec![
        s("run"),
        s("--listen"),
        s("127.0.0.1:0"),
        s("--target"),
        target.to_string(),
        s("--server-name"),
        s(SERVER_NAME),
        s("--ca-file"),
        path(pki.join("ca.pem")),
        s("--cert"),
        path(pki.join("client.pem")),
        s("--key"),
        path(pki.join("client.key")),
        s("--log-level"),
        s("warn"),
    ];
    if !scale {
        a.push(s("--no-scale-up"));
    }
    a
}

async fn start(fwd: &Forwarder, up: &Upstream, scratch: &Path) -> anyhow::Result<Running> {
    match &fwd.kind {
        Kind::Direct => Ok(Running {
            addr: up.plain,
            pid: None,
            forks: false,
            _service: None,
        }),
        Kind::Socat { buffer } => {
            let addr = free_addr()?;
            let service = listening(
                "socat",
                &[
                    format!("-b{buffer}"),
                    format!(
                        "TCP-LISTEN:{},bind=127.0.0.1,fork,reuseaddr,nodelay,backlog=128",
                        addr.port()
                    ),
                    format!("TCP:{},nodelay", up.plain),
                ],
                addr,
            )
            .await?;
            Ok(Running {
                addr,
                pid: Some(service.pid()),
                forks: true,
                _service: Some(service),
            })
        }
        Kind::Stunnel => {
            let addr = free_addr()?;
            let conf = scratch.join(format!("stunnel-{}.conf", addr.port()));
            std::fs::write(
                &conf,
                format!(
                    "foreground = yes\npid =\nsyslog = no\ndebug = 0\nsocket = l:TCP_NODELAY=1\n\
                     socket = r:TCP_NODELAY=1\n[efs]\nclient = yes\naccept = {addr}\n\
                     connect = {}\ncert = {}\nkey = {}\nCAfile = {}\nverifyChain = yes\n\
                     checkHost = {SERVER_NAME}\nsni = {SERVER_NAME}\n",
                    up.tls,
                    up.pki.join("client.pem").display(),
                    up.pki.join("client.key").display(),
                    up.pki.join("ca.pem").display(),
                ),
            )?;
            let service = listening("stunnel4", &[conf.display().to_string()], addr).await?;
            Ok(Running {
                addr,
                pid: Some(service.pid()),
                forks: false,
                _service: Some(service),
            })
        }
        Kind::Proxy { bin } => {
            let service = announced(bin, &proxy_args(up.tls, &up.pki, false)).await?;
            Ok(Running {
                addr: service.addr,
                pid: Some(service.pid()),
                forks: false,
                _service: Some(service),
            })
        }
    }
}

/// Figures of one forwarder under one pattern in one round.
#[derive(Default, Debug, Clone)]
struct Sample {
    first_call_ms: Option<f64>,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    write_mib_s: f64,
    read_mib_s: f64,
    cpu_write: Option<f64>,
    cpu_read: Option<f64>,
    rss_idle_kib: Option<f64>,
    rss_peak_kib: Option<f64>,
    idle_conn_kib: Option<f64>,
    /// `perf stat` counts per GiB moved (`--profile`), WRITE and READ.
    profile_write: BTreeMap<String, f64>,
    profile_read: BTreeMap<String, f64>,
}

/// The events `--profile` counts.
const PROFILE_EVENTS: &[&str] = &[
    "task-clock",
    "context-switches",
    "raw_syscalls:sys_enter",
    "syscalls:sys_enter_read",
    "syscalls:sys_enter_recvfrom",
    "syscalls:sys_enter_readv",
    "syscalls:sys_enter_recvmsg",
    "syscalls:sys_enter_write",
    "syscalls:sys_enter_writev",
    "syscalls:sys_enter_sendto",
    "syscalls:sys_enter_sendmsg",
    "syscalls:sys_enter_epoll_wait",
    "syscalls:sys_enter_epoll_pwait",
    "syscalls:sys_enter_futex",
    "syscalls:sys_enter_setsockopt",
];

/// A `perf stat -p` counting one phase.
struct Perf {
    child: Child,
    out: PathBuf,
}

impl Perf {
    async fn start(pid: u32, out: PathBuf) -> anyhow::Result<Perf> {
        let child = Command::new("perf")
            .args(["stat", "-x", ",", "-o"])
            .arg(&out)
            .args(["-e", &PROFILE_EVENTS.join(","), "-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting perf (apt-get install linux-perf)")?;
        // perf attaches asynchronously; give it a moment before the load starts.
        tokio::time::sleep(Duration::from_millis(150)).await;
        Ok(Perf { child, out })
    }

    /// Stops counting; returns each event's count per GiB of `bytes`.
    async fn finish(mut self, bytes: u64) -> anyhow::Result<BTreeMap<String, f64>> {
        let pid = self.child.id().context("perf exited early")?;
        Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .await?;
        self.child.wait().await?;
        let text = std::fs::read_to_string(&self.out)?;
        let mut counts = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() < 3 {
                continue;
            }
            if let Ok(count) = fields[0].parse::<f64>() {
                let name = fields[2]
                    .trim_start_matches("syscalls:sys_enter_")
                    .to_string();
                counts.insert(name, count / (bytes as f64 / GIB));
            }
        }
        Ok(counts)
    }
}

/// The libnfs side of the benchmark: where ganesha is and the file to copy.
struct Nfs {
    mount_port: u16,
    export: PathBuf,
    source: PathBuf,
    bytes: u64,
}

impl Nfs {
    fn url(&self, addr: SocketAddr, file: &str) -> String {
        format!(
            "nfs://{}{}/{file}?version=3&nfsport={}&mountport={}",
            addr.ip(),
            self.export.display(),
            addr.port(),
            self.mount_port
        )
    }
}

/// Runs a command with its stdout to /dev/null; fails with its stderr.
async fn run_quiet(program: &str, args: &[String]) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("starting {program} (apt-get install libnfs-utils)"))?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "{program} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

/// One phase (WRITE or READ) of a pattern: payload bytes moved and the time taken.
async fn phase(
    pattern: Pattern,
    flow: Flow,
    addr: SocketAddr,
    args: &Args,
    nfs: Option<&Nfs>,
    file: &str,
) -> anyhow::Result<(u64, Duration)> {
    let duration = Duration::from_secs(args.seconds);
    match pattern {
        Pattern::Rust => bench::throughput(addr, flow, SIZE, IN_FLIGHT, duration).await,
        Pattern::Bulk | Pattern::Trickle => {
            let chunking = pattern.chunking(args).context("chunking")?;
            tokio::task::spawn_blocking(move || {
                bench::blocking_throughput(addr, flow, SIZE, IN_FLIGHT, duration, chunking)
            })
            .await?
        }
        Pattern::Conc(n) => {
            bench::concurrent_throughput(addr, flow, SIZE, n, args.conc_in_flight, duration).await
        }
        Pattern::Libnfs => {
            let nfs = nfs.context("libnfs needs --nfs-server, --nfs-mount-port, --nfs-export")?;
            let url = nfs.url(addr, file);
            let took = match flow {
                Flow::Write => {
                    run_quiet("nfs-cp", &[nfs.source.display().to_string(), url]).await?
                }
                Flow::Read => {
                    let took = run_quiet("nfs-cat", &[url]).await?;
                    let copied = std::fs::metadata(nfs.export.join(file))?.len();
                    if copied != nfs.bytes {
                        bail!("{file}: {copied} bytes on the server, {} sent", nfs.bytes);
                    }
                    took
                }
            };
            Ok((nfs.bytes, took))
        }
    }
}

async fn cpu_after(running: &Running) -> anyhow::Result<Option<Duration>> {
    let Some(pid) = running.pid else {
        return Ok(None);
    };
    if running.forks {
        // Let forked children (socat) exit and be reaped, so their time is counted.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(Some(bench::cpu_time(pid)?))
}

async fn measure(
    pattern: Pattern,
    fwd: &Forwarder,
    up: &Upstream,
    args: &Args,
    nfs: Option<&Nfs>,
    scratch: &Path,
    round: u32,
) -> anyhow::Result<Sample> {
    let running = start(fwd, up, scratch).await?;
    let addr = running.addr;
    let mut s = Sample::default();
    let memory = |pid: Option<u32>| -> anyhow::Result<Option<(f64, f64)>> {
        pid.map(|pid| bench::memory_kib(pid).map(|(now, peak)| (now as f64, peak as f64)))
            .transpose()
    };
    if pattern == Pattern::Rust {
        let mut firsts = Vec::new();
        for _ in 0..11 {
            firsts.push(bench::first_call(addr).await?);
        }
        firsts.sort();
        s.first_call_ms = Some(firsts[firsts.len() / 2].as_secs_f64() * 1000.0);
        s.rss_idle_kib = memory(running.pid)?.map(|m| m.0);
    }
    let times = match pattern {
        Pattern::Rust => Some(bench::latency(addr, 200, args.calls).await?),
        Pattern::Bulk | Pattern::Trickle => {
            let chunking = pattern.chunking(args).context("chunking")?;
            let calls = args.calls;
            Some(
                tokio::task::spawn_blocking(move || {
                    bench::blocking_latency(addr, chunking, 200, calls)
                })
                .await??,
            )
        }
        Pattern::Conc(_) | Pattern::Libnfs => None,
    };
    if let Some(mut times) = times {
        times.sort_unstable();
        s.p50_us = Some(bench::percentile_us(&times, 0.50));
        s.p99_us = Some(bench::percentile_us(&times, 0.99));
    }
    let file = format!("bench-{}-{round}.bin", fwd.name);
    let perf = |flow: &str| {
        let out = scratch.join(format!("perf-{}-{}-{flow}.csv", fwd.name, pattern.name()));
        async move {
            match running.pid {
                Some(pid) if args.profile => Perf::start(pid, out).await.map(Some),
                _ => Ok(None),
            }
        }
    };
    let cpu0 = cpu_after(&running).await?;
    let counting = perf("write").await?;
    let (w, wt) = phase(pattern, Flow::Write, addr, args, nfs, &file).await?;
    if let Some(p) = counting {
        s.profile_write = p.finish(w).await?;
    }
    let cpu1 = cpu_after(&running).await?;
    let counting = perf("read").await?;
    let (r, rt) = phase(pattern, Flow::Read, addr, args, nfs, &file).await?;
    if let Some(p) = counting {
        s.profile_read = p.finish(r).await?;
    }
    let cpu2 = cpu_after(&running).await?;
    if let Some(nfs) = nfs {
        let _ = std::fs::remove_file(nfs.export.join(&file));
    }
    s.write_mib_s = w as f64 / MIB / wt.as_secs_f64();
    s.read_mib_s = r as f64 / MIB / rt.as_secs_f64();
    if let (Some(c0), Some(c1), Some(c2)) = (cpu0, cpu1, cpu2) {
        s.cpu_write = Some((c1 - c0).as_secs_f64() / (w as f64 / GIB));
        s.cpu_read = Some((c2 - c1).as_secs_f64() / (r as f64 / GIB));
    }
    s.rss_peak_kib = memory(running.pid)?.map(|m| m.1);
    if pattern == Pattern::Rust
        && let Some(pid) = running.pid
    {
        let before = bench::memory_kib(pid)?.0;
        let open = bench::idle_connections(addr, 100).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = bench::memory_kib(pid)?.0;
        s.idle_conn_kib = Some(after.saturating_sub(before) as f64 / 100.0);
        drop(open);
    }
    Ok(s)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// The median of each figure over the rounds of one forwarder.
fn median_sample(rounds: &[Sample]) -> Sample {
    let of = |get: fn(&Sample) -> Option<f64>| median(rounds.iter().filter_map(get).collect());
    Sample {
        first_call_ms: of(|s| s.first_call_ms),
        p50_us: of(|s| s.p50_us),
        p99_us: of(|s| s.p99_us),
        write_mib_s: of(|s| Some(s.write_mib_s)).unwrap_or(f64::NAN),
        read_mib_s: of(|s| Some(s.read_mib_s)).unwrap_or(f64::NAN),
        cpu_write: of(|s| s.cpu_write),
        cpu_read: of(|s| s.cpu_read),
        rss_idle_kib: of(|s| s.rss_idle_kib),
        rss_peak_kib: of(|s| s.rss_peak_kib),
        idle_conn_kib: of(|s| s.idle_conn_kib),
        profile_write: median_map(rounds.iter().map(|s| &s.profile_write)),
        profile_read: median_map(rounds.iter().map(|s| &s.profile_read)),
    }
}

fn median_map<'a>(maps: impl Iterator<Item = &'a BTreeMap<String, f64>>) -> BTreeMap<String, f64> {
    let mut all: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for map in maps {
        for (k, v) in map {
            all.entry(k.clone()).or_default().push(*v);
        }
    }
    all.into_iter()
        .filter_map(|(k, v)| median(v).map(|m| (k, m)))
        .collect()
}

impl Sample {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "first_call_ms": self.first_call_ms,
            "latency_p50_us": self.p50_us,
            "latency_p99_us": self.p99_us,
            "write_mib_s": self.write_mib_s,
            "read_mib_s": self.read_mib_s,
            "cpu_s_per_gib_write": self.cpu_write,
            "cpu_s_per_gib_read": self.cpu_read,
            "rss_idle_kib": self.rss_idle_kib,
            "rss_peak_kib": self.rss_peak_kib,
            "idle_connection_kib": self.idle_conn_kib,
            "perf_per_gib_write": self.profile_write,
            "perf_per_gib_read": self.profile_read,
        })
    }
}

/// One checked target of a pattern.
struct Check {
    name: &'static str,
    value: Option<f64>,
    text: String,
    pass: Option<bool>,
}

impl Check {
    fn verdict(&self) -> &'static str {
        match self.pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "n/a",
        }
    }
}

/// Results of one pattern: every forwarder's samples, round by round.
struct PatternResult {
    pattern: Pattern,
    order: Vec<String>,
    samples: BTreeMap<String, Vec<Sample>>,
}

impl PatternResult {
    /// Median over rounds of `f(a's sample, b's sample)` for the same round.
    fn per_round(
        &self,
        a: &str,
        b: &str,
        f: impl Fn(&Sample, &Sample) -> Option<f64>,
    ) -> Option<f64> {
        let (sa, sb) = (self.samples.get(a)?, self.samples.get(b)?);
        median(sa.iter().zip(sb).filter_map(|(x, y)| f(x, y)).collect())
    }

    fn checks(&self, proxy: &str) -> Vec<Check> {
        let mut checks = Vec::new();
        let Some(own) = self.samples.get(proxy).map(|s| median_sample(s)) else {
            return checks;
        };
        let ratio = |what: &'static str,
                     base: &'static str,
                     get: fn(&Sample) -> Option<f64>,
                     at_least: Option<f64>,
                     at_most: Option<f64>| {
            let value = self.per_round(proxy, base, |p, b| Some(get(p)? / get(b)?));
            let pass =
                value.map(|v| at_least.is_none_or(|t| v >= t) && at_most.is_none_or(|t| v <= t));
            let bound = at_least.map_or_else(
                || format!("<= {:.1}", at_most.unwrap_or(f64::NAN)),
                |t| format!(">= {t:.1}"),
            );
            Check {
                name: what,
                value,
                text: format!(
                    "{} {base} [{bound}]",
                    value.map_or("-".into(), |v| format!("{v:.2}x"))
                ),
                pass,
            }
        };
        checks.push(ratio(
            "WRITE/stunnel",
            "stunnel",
            |s| Some(s.write_mib_s),
            Some(1.5),
            None,
        ));
        checks.push(ratio(
            "READ/stunnel",
            "stunnel",
            |s| Some(s.read_mib_s),
            Some(1.5),
            None,
        ));
        checks.push(ratio(
            "WRITE/socat",
            "socat",
            |s| Some(s.write_mib_s),
            Some(0.8),
            None,
        ));
        checks.push(ratio(
            "READ/socat",
            "socat",
            |s| Some(s.read_mib_s),
            Some(0.8),
            None,
        ));
        checks.push(ratio(
            "CPU W/stunnel",
            "stunnel",
            |s| s.cpu_write,
            None,
            Some(0.5),
        ));
        checks.push(ratio(
            "CPU R/stunnel",
            "stunnel",
            |s| s.cpu_read,
            None,
            Some(0.5),
        ));
        for (name, value) in [
            ("CPU W s/GiB", own.cpu_write),
            ("CPU R s/GiB", own.cpu_read),
        ] {
            checks.push(Check {
                name,
                value,
                text: format!(
                    "{} s/GiB [<= 0.6]",
                    value.map_or("-".into(), |v| format!("{v:.2}"))
                ),
                pass: value.map(|v| v <= 0.6),
            });
        }
        let added = |who: &str| self.per_round(who, "direct", |x, d| Some(x.p50_us? - d.p50_us?));
        let (mine, socat) = (added(proxy), added("socat"));
        checks.push(Check {
            name: "p50 added",
            value: mine,
            text: match (mine, socat) {
                (Some(m), Some(s)) => format!("{m:.1} µs vs socat's {s:.1} µs [<= socat + 10]"),
                _ => "not measured with this pattern".into(),
            },
            pass: mine.zip(socat).map(|(m, s)| m <= s + 10.0),
        });
        checks.push(Check {
            name: "RSS peak",
            value: own.rss_peak_kib.map(|k| k / 1024.0),
            text: format!(
                "{} MiB [<= 16]",
                own.rss_peak_kib
                    .map_or("-".into(), |k| format!("{:.1}", k / 1024.0))
            ),
            pass: own.rss_peak_kib.map(|k| k <= 16.0 * 1024.0),
        });
        checks
    }

    /// efs-proxy and the baselines measured with this pattern.
    fn proxies(&self, baselines: &[(String, PathBuf)]) -> Vec<String> {
        std::iter::once("efs-proxy".to_string())
            .chain(baselines.iter().map(|(n, _)| n.clone()))
            .filter(|n| self.samples.contains_key(n))
            .collect()
    }

    fn print(&self, args: &Args, baselines: &[(String, PathBuf)]) -> serde_json::Value {
        let opt =
            |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        println!(
            "\n== pattern {}: {} ({} round{}, order rotated)",
            self.pattern.name(),
            self.pattern.describe(args),
            args.rounds,
            if args.rounds == 1 { "" } else { "s" }
        );
        println!(
            "{:<10} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>8}",
            "", "WRITE", "READ", "CPU W", "CPU R", "p50", "p99", "RSS peak", "first", "idle conn"
        );
        println!(
            "{:<10} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>8}",
            "", "MiB/s", "MiB/s", "s/GiB", "s/GiB", "µs", "µs", "MiB", "ms", "KiB"
        );
        let mut figures = serde_json::Map::new();
        for name in &self.order {
            let Some(rounds) = self.samples.get(name) else {
                continue;
            };
            let m = median_sample(rounds);
            println!(
                "{:<10} {:>8.0} {:>8.0} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>8}",
                name,
                m.write_mib_s,
                m.read_mib_s,
                opt(m.cpu_write, 2),
                opt(m.cpu_read, 2),
                opt(m.p50_us, 1),
                opt(m.p99_us, 1),
                opt(m.rss_peak_kib.map(|k| k / 1024.0), 1),
                opt(m.first_call_ms, 2),
                opt(m.idle_conn_kib, 1),
            );
            figures.insert(
                name.clone(),
                json!({
                    "median": m.to_json(),
                    "rounds": rounds.iter().map(Sample::to_json).collect::<Vec<_>>(),
                }),
            );
        }
        if args.profile {
            println!(
                "per GiB moved (perf stat):     {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
                "CPU ms", "syscalls", "reads", "writes", "epoll", "futex", "ctx sw"
            );
            for name in &self.order {
                let Some(rounds) = self.samples.get(name) else {
                    continue;
                };
                let m = median_sample(rounds);
                for (dir, p) in [("W", &m.profile_write), ("R", &m.profile_read)] {
                    if p.is_empty() {
                        continue;
                    }
                    let get = |keys: &[&str]| keys.iter().filter_map(|k| p.get(*k)).sum::<f64>();
                    println!(
                        "  {:<10} {dir}              {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0}",
                        name,
                        get(&["task-clock"]),
                        get(&["raw_syscalls:sys_enter"]),
                        get(&["read", "recvfrom", "readv", "recvmsg"]),
                        get(&["write", "writev", "sendto", "sendmsg"]),
                        get(&["epoll_wait", "epoll_pwait"]),
                        get(&["futex"]),
                        get(&["context-switches"]),
                    );
                }
            }
        }
        let mut targets = serde_json::Map::new();
        for proxy in self.proxies(baselines) {
            let checks = self.checks(&proxy);
            if checks.is_empty() {
                continue;
            }
            println!("{proxy} against the targets of issue 17 (medians of per-round ratios):");
            for c in &checks {
                println!("  {:<14} {:<48} {}", c.name, c.text, c.verdict());
            }
            targets.insert(
                proxy,
                checks
                    .iter()
                    .map(|c| json!({"target": c.name, "value": c.value, "text": c.text, "verdict": c.verdict()}))
                    .collect(),
            );
        }
        let mut before_after = Vec::new();
        for (base, _) in baselines {
            let r = |get: fn(&Sample) -> Option<f64>| {
                self.per_round("efs-proxy", base, |a, b| Some(get(a)? / get(b)?))
            };
            let (w, rd, cw, cr, p) = (
                r(|s| Some(s.write_mib_s)),
                r(|s| Some(s.read_mib_s)),
                r(|s| s.cpu_write),
                r(|s| s.cpu_read),
                r(|s| s.p50_us),
            );
            println!(
                "efs-proxy / {base}: WRITE {}  READ {}  CPU/GiB W {}  R {}  p50 {}",
                opt(w, 3),
                opt(rd, 3),
                opt(cw, 3),
                opt(cr, 3),
                opt(p, 3)
            );
            before_after.push(json!({
                "baseline": base, "write": w, "read": rd, "cpu_per_gib_write": cw,
                "cpu_per_gib_read": cr, "latency_p50": p,
            }));
        }
        json!({
            "pattern": self.pattern.name(),
            "description": self.pattern.describe(args),
            "figures": figures,
            "targets": targets,
            "before_after": before_after,
        })
    }
}

/// One core's AES-128-GCM rate in MiB/s, from `openssl speed`.
async fn aes_gcm_ceiling() -> anyhow::Result<f64> {
    let out = Command::new("openssl")
        .args([
            "speed",
            "-evp",
            "aes-128-gcm",
            "-seconds",
            "2",
            "-bytes",
            "16384",
        ])
        .stderr(Stdio::null())
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| l.to_ascii_lowercase().starts_with("aes-128-gcm"))
        .context("no AES-128-GCM line from openssl speed")?;
    let kb: f64 = last
        .split_whitespace()
        .last()
        .and_then(|v| v.trim_end_matches('k').parse().ok())
        .context("odd openssl speed output")?;
    Ok(kb * 1000.0 / MIB)
}

/// The proxy's WRITE throughput with multiplexing allowed up to 1, 2 and 4 connections.
async fn multiplex_curve(
    target_bin: &Path,
    proxy_bin: &Path,
    dir: &Path,
    args: &Args,
) -> anyhow::Result<Vec<(usize, f64)>> {
    let mut curve = Vec::new();
    for n in [1, 2, 4] {
        let pki = dir.join(format!("mux{n}"));
        let target = announced(
            target_bin,
            &[
                "--pki-dir".into(),
                pki.display().to_string(),
                "--backend".into(),
                "bench".into(),
                "--scale-max".into(),
                n.to_string(),
                "--scale-threshold".into(),
                "1000000".into(),
            ],
        )
        .await?;
        let proxy = announced(proxy_bin, &proxy_args(target.addr, &pki, true)).await?;
        eprintln!("measuring efs-proxy with up to {n} connections ...");
        // Load long enough for the 3 s scale-up window, then measure.
        let measure_for = Duration::from_secs(args.seconds);
        bench::throughput(
            proxy.addr,
            Flow::Write,
            SIZE,
            IN_FLIGHT,
            Duration::from_secs(4) + measure_for,
        )
        .await?;
        let (w, wt) =
            bench::throughput(proxy.addr, Flow::Write, SIZE, IN_FLIGHT, measure_for).await?;
        curve.push((n, w as f64 / MIB / wt.as_secs_f64()));
    }
    Ok(curve)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.rounds = 1;
        args.seconds = 1;
        args.calls = 500;
        args.nfs_mib = args.nfs_mib.min(256);
        args.no_multiplex = true;
    }
    let patterns: Vec<Pattern> = args
        .patterns
        .iter()
        .map(|p| Pattern::parse(p))
        .collect::<anyhow::Result<_>>()?;
    let dir = tempfile::tempdir()?;
    let target_bin = sibling("fake-mount-target")?;
    let proxy_bin = sibling("efs-proxy")?;
    let path = |p: &Path| p.display().to_string();
    let s = |v: &str| v.to_string();

    let mut forwarders = vec![
        Forwarder {
            name: "direct".into(),
            kind: Kind::Direct,
        },
        Forwarder {
            name: "socat".into(),
            kind: Kind::Socat { buffer: 131_072 },
        },
        Forwarder {
            name: "socat-8k".into(),
            kind: Kind::Socat { buffer: 8192 },
        },
        Forwarder {
            name: "stunnel".into(),
            kind: Kind::Stunnel,
        },
        Forwarder {
            name: "efs-proxy".into(),
            kind: Kind::Proxy {
                bin: proxy_bin.clone(),
            },
        },
    ];
    for (name, bin) in &args.baseline {
        forwarders.push(Forwarder {
            name: name.clone(),
            kind: Kind::Proxy { bin: bin.clone() },
        });
    }
    let wanted = |f: &Forwarder| {
        let baseline = args.baseline.iter().any(|(n, _)| *n == f.name);
        baseline || args.only.is_empty() || args.only.contains(&f.name)
    };
    forwarders.retain(|f| wanted(f));

    // The bench responder, behind TLS and in plaintext.
    let bench_pki = dir.path().join("pki");
    let bench_tls = announced(
        &target_bin,
        &[s("--pki-dir"), path(&bench_pki), s("--backend"), s("bench")],
    )
    .await?;
    let bench_plain = announced(
        &target_bin,
        &[
            s("--pki-dir"),
            path(&dir.path().join("plain")),
            s("--backend"),
            s("bench"),
            s("--plaintext"),
        ],
    )
    .await?;
    let bench_up = Upstream {
        tls: bench_tls.addr,
        pki: bench_pki,
        plain: bench_plain.addr,
    };

    // libnfs: relays to ganesha, and the file to copy.
    let mut nfs_side = None;
    if patterns.contains(&Pattern::Libnfs) {
        let (Some(server), Some(mount_port), Some(export)) = (
            args.nfs_server,
            args.nfs_mount_port,
            args.nfs_export.clone(),
        ) else {
            bail!(
                "pattern libnfs needs --nfs-server, --nfs-mount-port and --nfs-export (tests/bench/run.sh sets them)"
            );
        };
        let relay_pki = dir.path().join("relay-pki");
        let relay_tls = announced(
            &target_bin,
            &[
                s("--pki-dir"),
                path(&relay_pki),
                s("--backend"),
                server.to_string(),
            ],
        )
        .await?;
        let relay_plain = announced(
            &target_bin,
            &[
                s("--pki-dir"),
                path(&dir.path().join("relay-plain")),
                s("--backend"),
                server.to_string(),
                s("--plaintext"),
            ],
        )
        .await?;
        let source = args
            .nfs_scratch
            .join(format!("efs-bench-source-{}.bin", std::process::id()));
        let bytes = args.nfs_mib * 1024 * 1024;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&source)
                .with_context(|| format!("creating {}", source.display()))?;
            let block = vec![0x5au8; 1024 * 1024];
            for _ in 0..args.nfs_mib {
                f.write_all(&block)?;
            }
        }
        let up = Upstream {
            tls: relay_tls.addr,
            pki: relay_pki,
            plain: relay_plain.addr,
        };
        nfs_side = Some((
            up,
            Nfs {
                mount_port,
                export,
                source,
                bytes,
            },
            relay_tls,
            relay_plain,
        ));
    }

    let started = Instant::now();
    let mut results = Vec::new();
    for pattern in &patterns {
        let (up, nfs) = match pattern {
            Pattern::Libnfs => {
                let (up, nfs, _, _) = nfs_side.as_ref().context("libnfs set-up")?;
                (up, Some(nfs))
            }
            _ => (&bench_up, None),
        };
        let fwds: Vec<&Forwarder> = forwarders
            .iter()
            .filter(|f| *pattern == Pattern::Rust || f.name != "socat-8k")
            .collect();
        let mut result = PatternResult {
            pattern: *pattern,
            order: fwds.iter().map(|f| f.name.clone()).collect(),
            samples: BTreeMap::new(),
        };
        for round in 0..args.rounds {
            for i in 0..fwds.len() {
                let fwd = fwds[(i + round as usize) % fwds.len()];
                eprintln!(
                    "[{:>4.0} s] {}: {} (round {} of {}) ...",
                    started.elapsed().as_secs_f64(),
                    pattern.name(),
                    fwd.name,
                    round + 1,
                    args.rounds
                );
                let sample = measure(*pattern, fwd, up, &args, nfs, dir.path(), round)
                    .await
                    .with_context(|| format!("pattern {}, {}", pattern.name(), fwd.name))?;
                result
                    .samples
                    .entry(fwd.name.clone())
                    .or_default()
                    .push(sample);
            }
        }
        results.push(result);
    }
    if let Some((_, nfs, _, _)) = &nfs_side {
        let _ = std::fs::remove_file(&nfs.source);
    }

    let ceiling = aes_gcm_ceiling().await.unwrap_or(f64::NAN);
    let curve = if args.no_multiplex || !forwarders.iter().any(|f| f.name == "efs-proxy") {
        Vec::new()
    } else {
        multiplex_curve(&target_bin, &proxy_bin, dir.path(), &args).await?
    };

    println!(
        "\nefs-bench: {} round(s), {} s per throughput phase, {} latency calls; {:.0} s",
        args.rounds,
        args.seconds,
        args.calls,
        started.elapsed().as_secs_f64()
    );
    let tables: Vec<_> = results
        .iter()
        .map(|r| r.print(&args, &args.baseline))
        .collect();

    println!("\none-core AES-128-GCM (openssl speed): {ceiling:.0} MiB/s");
    if !curve.is_empty() {
        println!(
            "efs-proxy WRITE with multiplexing (connections: MiB/s): {}",
            curve
                .iter()
                .map(|(n, m)| format!("{n}: {m:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // Every target on every pattern, in one table per proxy build.
    let mut proxies = vec!["efs-proxy".to_string()];
    proxies.extend(args.baseline.iter().map(|(n, _)| n.clone()));
    for proxy in &proxies {
        let summaries: Vec<(String, Vec<Check>)> = results
            .iter()
            .map(|r| (r.pattern.name(), r.checks(proxy)))
            .collect();
        let Some((_, first)) = summaries.iter().find(|(_, c)| !c.is_empty()) else {
            continue;
        };
        println!("\ntargets of issue 17 per client pattern ({proxy}):");
        print!("{:<9}", "");
        for c in first {
            print!(" {:>13}", c.name);
        }
        println!();
        for (name, checks) in &summaries {
            print!("{name:<9}");
            for c in checks {
                let v = c.value.map_or("-".to_string(), |v| format!("{v:.2}"));
                print!(" {:>13}", format!("{v} {}", c.verdict()));
            }
            println!();
        }
    }

    let doc = json!({
        "rounds": args.rounds,
        "seconds": args.seconds,
        "aes_128_gcm_one_core_mib_s": ceiling,
        "patterns": tables,
        "multiplex_write_mib_s": curve.iter().map(|(n, m)| json!({"connections": n, "mib_s": m})).collect::<Vec<_>>(),
    });
    if let Some(parent) = args.json.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&doc)?)?;
    println!("\nJSON: {}", args.json.display());
    Ok(())
}
