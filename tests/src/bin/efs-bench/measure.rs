//! One measurement: a forwarder started afresh, its latency, throughput, CPU and memory
//! under one client pattern.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use efs_proxy_tests::bench::{self, CpuTimes, Flow};
use tokio::process::{Child, Command};

use crate::args::Args;
use crate::forwarder::{Forwarder, Running, Upstream, start};
use crate::pattern::Pattern;
use crate::{GIB, IN_FLIGHT, MIB, SIZE};

/// Figures of one forwarder under one pattern in one round.
#[derive(Default, Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) first_call_ms: Option<f64>,
    pub(crate) p50_us: Option<f64>,
    pub(crate) p99_us: Option<f64>,
    pub(crate) write_mib_s: f64,
    pub(crate) read_mib_s: f64,
    pub(crate) cpu_write: Option<f64>,
    pub(crate) cpu_read: Option<f64>,
    /// Where the machine's CPU went in each phase.
    pub(crate) split_write: CpuSplit,
    pub(crate) split_read: CpuSplit,
    pub(crate) rss_idle_kib: Option<f64>,
    pub(crate) rss_peak_kib: Option<f64>,
    pub(crate) idle_conn_kib: Option<f64>,
    /// `perf stat` counts per GiB moved (`--profile`), WRITE and READ.
    pub(crate) profile_write: BTreeMap<String, f64>,
    pub(crate) profile_read: BTreeMap<String, f64>,
}

/// Where the CPU time of one phase went, per GiB moved: the numbers that say how much of
/// the machine a forwarder leaves to the client and the mount target (all share its cores).
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct CpuSplit {
    /// The forwarder's time in the kernel (system calls, socket copies), s/GiB.
    pub(crate) forwarder_system: Option<f64>,
    /// The mount target's CPU (user + system), s/GiB.
    pub(crate) target: Option<f64>,
    /// The whole machine's busy CPU (client, forwarder, mount target, all else), s/GiB.
    pub(crate) machine: Option<f64>,
    /// Cores busy during the phase: the machine's busy time over the phase's duration.
    pub(crate) cores: Option<f64>,
}

/// The CPU clocks read before and after a phase.
struct Clocks {
    forwarder: Option<CpuTimes>,
    target: CpuTimes,
    machine: Duration,
}

impl Clocks {
    /// Reads every clock; lets forked children (socat) exit and be reaped first, so that
    /// their time is counted.
    async fn read(running: &Running) -> anyhow::Result<Clocks> {
        if running.forks {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(Clocks {
            forwarder: running.pid.map(bench::cpu_times).transpose()?,
            target: bench::cpu_times(running.target_pid)?,
            machine: bench::machine_busy()?,
        })
    }

    /// The forwarder's CPU s/GiB and the split, from this reading to `after`, for a phase
    /// that moved `bytes` in `took`.
    fn per_gib(&self, after: &Clocks, bytes: u64, took: Duration) -> (Option<f64>, CpuSplit) {
        let gib = bytes as f64 / GIB;
        let per_gib = |a: Duration, b: Duration| b.saturating_sub(a).as_secs_f64() / gib;
        let forwarder = self.forwarder.zip(after.forwarder);
        let machine = after.machine.saturating_sub(self.machine).as_secs_f64();
        let split = CpuSplit {
            forwarder_system: forwarder.map(|(a, b)| per_gib(a.system, b.system)),
            target: Some(per_gib(self.target.total(), after.target.total())),
            machine: Some(machine / gib),
            cores: Some(machine / took.as_secs_f64()),
        };
        (forwarder.map(|(a, b)| per_gib(a.total(), b.total())), split)
    }
}

/// The events `--profile` counts.
pub(crate) const PROFILE_EVENTS: &[&str] = &[
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
pub(crate) struct Perf {
    pub(crate) child: Child,
    pub(crate) out: PathBuf,
}

impl Perf {
    pub(crate) async fn start(pid: u32, out: PathBuf) -> anyhow::Result<Perf> {
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
    pub(crate) async fn finish(mut self, bytes: u64) -> anyhow::Result<BTreeMap<String, f64>> {
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
pub(crate) struct Nfs {
    /// nfs-ganesha's NFS port, which the fake mount target relays to.
    pub(crate) server: SocketAddr,
    pub(crate) mount_port: u16,
    pub(crate) export: PathBuf,
    pub(crate) source: PathBuf,
    pub(crate) bytes: u64,
}

impl Nfs {
    /// The libnfs side from the command line: the source file of `--nfs-mib` written to
    /// `--nfs-scratch` (removed when this is dropped).
    pub(crate) fn prepare(args: &Args) -> anyhow::Result<Nfs> {
        let (Some(server), Some(mount_port), Some(export)) = (
            args.nfs_server,
            args.nfs_mount_port,
            args.nfs_export.clone(),
        ) else {
            bail!(
                "pattern libnfs needs --nfs-server, --nfs-mount-port and --nfs-export (tests/bench/run.sh sets them)"
            );
        };
        let source = args
            .nfs_scratch
            .join(format!("efs-bench-source-{}.bin", std::process::id()));
        let mut file = std::fs::File::create(&source)
            .with_context(|| format!("creating {}", source.display()))?;
        let block = vec![0x5au8; 1024 * 1024];
        for _ in 0..args.nfs_mib {
            file.write_all(&block)
                .with_context(|| format!("writing {}", source.display()))?;
        }
        Ok(Nfs {
            server,
            mount_port,
            export,
            source,
            bytes: args.nfs_mib * 1024 * 1024,
        })
    }

    pub(crate) fn url(&self, addr: SocketAddr, file: &str) -> String {
        format!(
            "nfs://{}{}/{file}?version=3&nfsport={}&mountport={}",
            addr.ip(),
            self.export.display(),
            addr.port(),
            self.mount_port
        )
    }
}

impl Drop for Nfs {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.source);
    }
}

/// Runs a command with its stdout to /dev/null; fails with its stderr.
pub(crate) async fn run_quiet(program: &str, args: &[String]) -> anyhow::Result<Duration> {
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
pub(crate) async fn phase(
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

/// `--calls` sequential 128-byte calls with the pattern's client, after 200 to warm up;
/// `None` for patterns whose client cannot make single calls (concN, libnfs).
async fn latency(
    pattern: Pattern,
    addr: SocketAddr,
    args: &Args,
) -> anyhow::Result<Option<Vec<u64>>> {
    Ok(match pattern {
        Pattern::Rust => Some(bench::latency(addr, 200, args.calls).await?),
        Pattern::Bulk | Pattern::Trickle => {
            let chunking = pattern.chunking(args).context("chunking")?;
            let calls = args.calls;
            let times = tokio::task::spawn_blocking(move || {
                bench::blocking_latency(addr, chunking, 200, calls)
            });
            Some(times.await??)
        }
        Pattern::Conc(_) | Pattern::Libnfs => None,
    })
}

/// One forwarder under one pattern: started afresh, latency, then WRITE and READ
/// throughput with its CPU time (and `perf stat` counts) per phase, and its memory.
pub(crate) async fn measure(
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
    if let Some(mut times) = latency(pattern, addr, args).await? {
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
    let clocks0 = Clocks::read(&running).await?;
    let counting = perf("write").await?;
    let (w, wt) = phase(pattern, Flow::Write, addr, args, nfs, &file).await?;
    if let Some(p) = counting {
        s.profile_write = p.finish(w).await?;
    }
    let clocks1 = Clocks::read(&running).await?;
    let counting = perf("read").await?;
    let (r, rt) = phase(pattern, Flow::Read, addr, args, nfs, &file).await?;
    if let Some(p) = counting {
        s.profile_read = p.finish(r).await?;
    }
    let clocks2 = Clocks::read(&running).await?;
    if let Some(nfs) = nfs {
        let _ = std::fs::remove_file(nfs.export.join(&file));
    }
    s.write_mib_s = w as f64 / MIB / wt.as_secs_f64();
    s.read_mib_s = r as f64 / MIB / rt.as_secs_f64();
    (s.cpu_write, s.split_write) = clocks0.per_gib(&clocks1, w, wt);
    (s.cpu_read, s.split_read) = clocks1.per_gib(&clocks2, r, rt);
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
