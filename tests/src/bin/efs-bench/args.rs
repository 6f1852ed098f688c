//! The command line of `efs-bench`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "efs-bench",
    about = "efs-proxy against direct, socat and stunnel, one table per client pattern",
    // A later option wins (tests/bench/compare.sh passes defaults the caller can override).
    args_override_self = true
)]
pub(crate) struct Args {
    /// Seconds of each throughput measurement.
    #[arg(long, default_value_t = 2)]
    pub(crate) seconds: u64,
    /// Sequential calls of each latency measurement.
    #[arg(long, default_value_t = 2000)]
    pub(crate) calls: usize,
    /// Rounds: every forwarder is measured this many times per pattern, in rotated order;
    /// figures are medians, ratios medians of per-round ratios.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub(crate) rounds: u32,
    /// Client patterns: rust, bulk, trickle, conc4, conc16 (concN: N connections), libnfs.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rust,bulk,trickle,conc4,conc16,libnfs"
    )]
    pub(crate) patterns: Vec<String>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/efs-bench.json")]
    pub(crate) json: PathBuf,
    /// Skip the multiplexing curve.
    #[arg(long)]
    pub(crate) no_multiplex: bool,
    /// Measure only these forwarders (direct, socat, socat-8k, stunnel, efs-proxy); default:
    /// all.
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<String>,
    /// Also measure another efs-proxy binary under this name (repeatable), e.g.
    /// `before=/tmp/efs-proxy-old`: before/after figures from one run.
    #[arg(long, value_name = "NAME=PATH", value_parser = parse_baseline)]
    pub(crate) baseline: Vec<(String, PathBuf)>,
    /// The trickling client writes calls in pieces of this many bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    pub(crate) trickle_send: usize,
    /// The trickling client reads replies this many bytes at a time.
    #[arg(long, default_value_t = 4 * 1024)]
    pub(crate) trickle_recv: usize,
    /// Calls in flight per connection of the concN patterns.
    #[arg(long, default_value_t = 4)]
    pub(crate) conc_in_flight: usize,
    /// libnfs: the NFS server (nfs-ganesha with NFSv3) the fake mount target relays to.
    #[arg(long, value_name = "ADDR")]
    pub(crate) nfs_server: Option<SocketAddr>,
    /// libnfs: the server's MOUNT port (the one MOUNT call goes there directly).
    #[arg(long, value_name = "PORT")]
    pub(crate) nfs_mount_port: Option<u16>,
    /// libnfs: the export's path, which is also its directory on this machine.
    #[arg(long, value_name = "DIR")]
    pub(crate) nfs_export: Option<PathBuf>,
    /// libnfs: MiB copied each way per measurement.
    #[arg(long, default_value_t = 1024)]
    pub(crate) nfs_mib: u64,
    /// libnfs: directory for the source file (a tmpfs, so the local disk is not measured).
    #[arg(long, default_value = "/dev/shm")]
    pub(crate) nfs_scratch: PathBuf,
    /// Count the forwarder's system calls, context switches and CPU time per GiB in each
    /// phase with `perf stat -p` (tracepoints: cheap enough not to change the figures much,
    /// and counts are not moved by the machine's load the way times are).
    #[arg(long)]
    pub(crate) profile: bool,
    /// A short run (1 round, 1 s, 256 MiB for libnfs, 500 latency calls, no multiplexing):
    /// checks the harness, not the figures.
    #[arg(long)]
    pub(crate) quick: bool,
}

impl Args {
    /// `--quick`: 1 round, 1 s, 500 latency calls, at most 256 MiB for libnfs, no
    /// multiplexing curve.
    pub(crate) fn quickened(mut self) -> Args {
        if self.quick {
            self.rounds = 1;
            self.seconds = 1;
            self.calls = 500;
            self.nfs_mib = self.nfs_mib.min(256);
            self.no_multiplex = true;
        }
        self
    }
}

pub(crate) fn parse_baseline(text: &str) -> Result<(String, PathBuf), String> {
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
