//! The two detached processes of a mount (hidden subcommands, started by `efs-proxy mount`):
//!
//! - `mount-supervisor DIR`: holds the proxy's listening socket (bound by `mount`, inherited
//!   as stdin, as inetd hands a socket to a `wait` service), starts `mount-proxy DIR` with it
//!   (as its stdin too) and starts it again if it dies while the file system is mounted:
//!   the port never closes, so the kernel client's reconnects wait in the socket's backlog
//!   and its hard mount goes on. It watches the mount table and, once the mount has been gone
//!   for the grace period, stops the proxy, removes the state directory and exits.
//! - `mount-proxy DIR`: the proxy itself on that socket. Once started it checks its own way to
//!   the mount target (an NFS NULL call through itself: TLS verified, READY bind) and writes
//!   `status.json` (ready or failed, partition, certificate expiry), then refreshes the
//!   counters there every 5 s. It watches the mount table too, so it exits after `umount`
//!   even if its supervisor was killed.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use efs_proxy::ProxyHandle;
use efs_proxy::internal::mount::{mountinfo, state};
use rustix::process::{Pid, Signal};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use super::iam::IamRunArgs;
use super::target::TargetArgs;

const TICK: Duration = Duration::from_secs(1);
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// The mount's log (`DIR/proxy.log`, in `/run`: memory) rotates at this size, and one
/// rotated file is kept: a mount that lives for months, or a server that keeps refusing, never
/// grows it past twice this. `EFS_PROXY_MOUNT_LOG_MAX_BYTES` overrides it (for the tests).
const LOG_MAX_BYTES: u64 = 1 << 20;
const LOG_ROTATED_FILES: usize = 1;

/// Logs both daemons of the mount in `dir` to `dir/proxy.log`, rotated by size (each process
/// rotates what it wrote; stderr, kept for panics and the last error line, is the file as it
/// was opened by `mount`). If the file cannot be opened, logs to stderr and says why.
pub(crate) fn init_logging(dir: &Path, level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let max_bytes = std::env::var("EFS_PROXY_MOUNT_LOG_MAX_BYTES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(LOG_MAX_BYTES);
    let path = dir.join("proxy.log");
    let file = efs_proxy::internal::dropin::RotatingFile::open(&path, max_bytes, LOG_ROTATED_FILES);
    let registry = tracing_subscriber::registry()
        .with(super::without_request_dumps())
        .with(super::log_filter(level));
    let layer = tracing_subscriber::fmt::layer().with_ansi(false);
    match file {
        Ok(file) => registry.with(layer.with_writer(file)).init(),
        Err(e) => {
            registry.with(layer.with_writer(std::io::stderr)).init();
            warn!("cannot open {} ({e}): logging to stderr", path.display());
        }
    }
}

/// `mount.json`: what `mount` settled, read by the daemons, `mounts` and `umount`.
pub(crate) struct MountInfo {
    pub port: u16,
    pub grace: Duration,
    pub proxy_args: Vec<String>,
}

pub(crate) fn read_mount_info(dir: &Path) -> anyhow::Result<MountInfo> {
    let text = std::fs::read_to_string(dir.join("mount.json"))
        .with_context(|| format!("cannot read {}/mount.json", dir.display()))?;
    let v: Value = serde_json::from_str(&text).context("mount.json is not JSON")?;
    let port = v["port"].as_u64().and_then(|p| u16::try_from(p).ok());
    let args = v["proxy_args"].as_array().map(|a| {
        a.iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    });
    let (Some(port), Some(proxy_args)) = (port, args) else {
        bail!("{}/mount.json lacks port or proxy_args", dir.display());
    };
    Ok(MountInfo {
        port,
        grace: Duration::from_secs(v["grace_secs"].as_u64().unwrap_or(5)),
        proxy_args,
    })
}

/// The mount table the watch reads: `/proc/self/mountinfo`, or `EFS_PROXY_MOUNTINFO` (tests).
pub(crate) fn mount_table() -> String {
    let path = std::env::var_os("EFS_PROXY_MOUNTINFO")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("/proc/self/mountinfo"), PathBuf::from);
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Whether the mount is there, was there, or never came.
pub(crate) struct Watch {
    port: u16,
    grace: Duration,
    seen: bool,
    gone_since: Option<Instant>,
    /// The `mount` command: while it runs, the mount may still come.
    parent: Option<u32>,
    /// `DIR/mounted`, written by `mount` once the NFS mount succeeded: seen, even if the
    /// table has not been read since.
    marker: PathBuf,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Keep,
    /// Mounted, then gone for the grace period.
    Unmounted,
    /// Never mounted, and the `mount` command is gone.
    Abandoned,
}

impl Watch {
    pub(crate) fn new(dir: &Path, port: u16, grace: Duration, parent: Option<u32>) -> Watch {
        Watch {
            port,
            grace,
            seen: false,
            gone_since: None,
            parent,
            marker: dir.join("mounted"),
        }
    }

    pub(crate) fn step(&mut self) -> Verdict {
        if !self.seen && self.marker.exists() {
            self.seen = true;
        }
        if mountinfo::has_proxy_mount(&mount_table(), self.port) {
            self.seen = true;
            self.gone_since = None;
            return Verdict::Keep;
        }
        if self.seen {
            let since = *self.gone_since.get_or_insert_with(Instant::now);
            return if since.elapsed() >= self.grace {
                Verdict::Unmounted
            } else {
                Verdict::Keep
            };
        }
        match self.parent {
            Some(pid) if !process_alive(pid) => Verdict::Abandoned,
            _ => Verdict::Keep,
        }
    }
}

fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next());
        !matches!(state, None | Some('Z' | 'X'))
    })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sends `signal` to `pid` (a process of this mount, checked by the caller); a process that
/// is already gone is not an error.
pub(crate) fn send_signal(pid: i32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// The listening socket this process was handed as stdin.
fn inherited_socket() -> std::io::Result<OwnedFd> {
    std::io::stdin().as_fd().try_clone_to_owned()
}

/// `efs-proxy mount-supervisor DIR [--parent PID]`, the listening socket as stdin.
pub(crate) fn supervisor_main(dir: &Path, parent: Option<u32>) -> anyhow::Result<()> {
    // A session of its own: no controlling terminal. Fails only for a process group leader,
    // which a freshly spawned child is not.
    rustix::process::setsid().context("cannot start a new session (setsid)")?;
    let socket = inherited_socket().context("no listening socket on stdin")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(supervise(dir, socket, parent))
}

async fn supervise(dir: &Path, socket: OwnedFd, parent: Option<u32>) -> anyhow::Result<()> {
    let mount = read_mount_info(dir)?;
    state::write_atomic(
        dir,
        "supervisor.pid",
        format!("{}\n", std::process::id()).as_bytes(),
    )?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut watch = Watch::new(dir, mount.port, mount.grace, parent);
    let mut tick = tokio::time::interval(TICK);
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut child = spawn_proxy(dir, &socket)?;
        let started = Instant::now();
        if let Some(pid) = child.id() {
            state::write_atomic(dir, "proxy.pid", format!("{pid}\n").as_bytes())?;
        }
        let exit = loop {
            tokio::select! {
                status = child.wait() => break Some(status),
                _ = term.recv() => break None,
                _ = int.recv() => break None,
                _ = tick.tick() => match watch.step() {
                    Verdict::Keep => {}
                    verdict => {
                        info!("supervisor: {verdict:?}: stopping the proxy");
                        break None;
                    }
                },
            }
        };
        let Some(status) = exit else {
            stop_child(&mut child).await;
            remove_state(dir);
            return Ok(());
        };
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        let verdict = watch.step();
        if !watch.seen {
            // Never mounted: `mount` reports the failure and removes the state (or, if it is
            // gone, the watch's Abandoned does).
            if verdict == Verdict::Abandoned {
                remove_state(dir);
            }
            info!("supervisor: the proxy exited ({status}) before the mount; stopping");
            return Ok(());
        }
        if verdict == Verdict::Unmounted {
            remove_state(dir);
            return Ok(());
        }
        backoff = if started.elapsed() > Duration::from_secs(60) {
            Duration::from_secs(1)
        } else {
            backoff
        };
        warn!(
            "supervisor: the proxy exited ({status}); restarting it in {backoff:?} on the same port"
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = term.recv() => { remove_state(dir); return Ok(()); }
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

fn spawn_proxy(dir: &Path, socket: &OwnedFd) -> anyhow::Result<tokio::process::Child> {
    let socket = socket
        .try_clone()
        .context("cannot duplicate the listening socket")?;
    let mut cmd = tokio::process::Command::new(super::mount::self_exe());
    cmd.arg0("efs-proxy")
        .arg("mount-proxy")
        .arg(dir)
        .stdin(std::process::Stdio::from(socket))
        .stdout(std::process::Stdio::null());
    cmd.spawn().context("cannot start the proxy")
}

async fn stop_child(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        send_signal(pid, Signal::TERM);
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

fn remove_state(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!("cannot remove {}: {e}", dir.display());
    }
}

/// The target, TLS and IAM options of the mount, parsed as `efs-proxy run` parses them.
#[derive(Parser)]
#[command(name = "efs-proxy")]
struct ProxyArgs {
    #[command(flatten)]
    server: TargetArgs,
    #[command(flatten)]
    iam: IamRunArgs,
}

/// `efs-proxy mount-proxy DIR`, the listening socket as stdin.
pub(crate) async fn proxy_main(dir: &Path) -> anyhow::Result<()> {
    let mount = read_mount_info(dir)?;
    let started = now_secs();
    let supervisor = std::os::unix::process::parent_id();
    let proxy = match start_proxy(&mount).await {
        Ok(p) => p,
        Err(e) => {
            let text = super::report(&e);
            write_status(
                dir,
                json!({"state": "failed", "error": text, "pid": std::process::id()}),
            );
            return Err(e);
        }
    };
    let probe = probe(&proxy).await;
    write_status(
        dir,
        status_json(&proxy, started, probe.as_ref().err().map(String::as_str)),
    );
    if let Err(e) = &probe {
        warn!("not ready: {e}");
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut watch = Watch::new(dir, mount.port, mount.grace, None);
    let mut tick = tokio::time::interval(TICK);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tick.tick() => {
                if watch.step() == Verdict::Unmounted {
                    info!("the mount is gone: exiting");
                    if std::os::unix::process::parent_id() != supervisor {
                        remove_state(dir);
                    }
                    break;
                }
                if last.elapsed() >= STATUS_EVERY {
                    last = Instant::now();
                    write_status(dir, status_json(&proxy, started, None));
                }
            }
        }
    }
    proxy.shutdown().await;
    Ok(())
}

async fn start_proxy(mount: &MountInfo) -> anyhow::Result<ProxyHandle> {
    let args = ProxyArgs::try_parse_from(
        std::iter::once("efs-proxy".to_string()).chain(mount.proxy_args.iter().cloned()),
    )
    .map_err(|e| anyhow::anyhow!("bad proxy_args in mount.json: {e}"))?;
    let socket = inherited_socket().context("no listening socket on stdin")?;
    let std_listener = std::net::TcpListener::from(socket);
    let addr = std_listener
        .local_addr()
        .context("stdin is not the proxy's listening socket (started by mount-supervisor?)")?;
    if !addr.ip().is_loopback() || addr.port() != mount.port {
        bail!(
            "the socket on stdin listens on {addr}, not on 127.0.0.1:{}",
            mount.port
        );
    }
    std_listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let builder = super::iam::builder(&args.iam, args.server).await?;
    let proxy = builder.listener(listener).start().await?;
    info!("serving the mount on {}", proxy.local_addr());
    Ok(proxy)
}

/// An NFS NULL call through the proxy itself: it answers only once the proxy connected,
/// verified the server and bound; the bind must have been READY.
async fn probe(proxy: &ProxyHandle) -> Result<(), String> {
    let call = efs_rpc::RpcMessage::call(rand::random(), efs_rpc::CallHeader::new(100_003, 4, 0))
        .encode()
        .map_err(|e| e.to_string())?;
    let record = efs_rpc::Record::from_message(&call).map_err(|e| e.to_string())?;
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(proxy.local_addr()).await?;
        stream.write_all(record.wire()).await?;
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).await?;
        // Read the whole fragment, so closing does not reset the connection (a logged warning).
        let len = u32::from_be_bytes(header) & 0x7fff_ffff;
        let mut body = vec![0u8; len.min(1 << 20) as usize];
        stream.read_exact(&mut body).await
    };
    let limit = Duration::from_secs(40);
    match tokio::time::timeout(limit, exchange).await {
        Err(_) => return Err(format!("no answer through the proxy within {limit:?}")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(
                "the proxy closed the connection: it could not reach, verify or bind \
                        to the mount target (the log says which layer failed)"
                    .into(),
            );
        }
        Ok(Err(e)) => return Err(format!("through the proxy: {e}")),
        Ok(Ok(_)) => {}
    }
    let stats = proxy.stats();
    if stats.ready_binds == 0 {
        return Err(format!(
            "the mount target answered but never bound READY ({} binds, {} refused)",
            stats.binds, stats.bind_refusals
        ));
    }
    Ok(())
}

fn status_json(proxy: &ProxyHandle, started: u64, error: Option<&str>) -> Value {
    let s = proxy.stats();
    let expiry = s
        .certificate_expiry
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    let ready = s.ready_binds > 0;
    json!({
        "state": if ready { "ready" } else if error.is_some() { "failed" } else { "starting" },
        "error": error,
        "pid": std::process::id(),
        "started": started,
        "updated": now_secs(),
        "partition": s.partition_prefix.map(hex::encode),
        "certificate_expiry": expiry,
        "connections_active": s.connections_active,
        "connections_accepted": s.connections_accepted,
        "binds": s.binds,
        "bytes_to_server": s.bytes_to_server,
        "bytes_to_client": s.bytes_to_client,
        "server_timeouts": s.server_timeouts,
    })
}

fn write_status(dir: &Path, status: Value) {
    let text = format!("{status}\n");
    if let Err(e) = state::write_atomic(dir, "status.json", text.as_bytes()) {
        warn!("cannot write {}/status.json: {e}", dir.display());
    }
}
