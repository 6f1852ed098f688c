//! `efs-proxy mount FS_ID[:/PATH] MOUNTPOINT [-o OPTIONS]`, and the same binary run as
//! `mount.s3files` / `mount.efs` by mount(8) (`mount.TYPE SPEC DIR [-sfnv] [-o OPTIONS]`).
//!
//! The steps: options settled (any error before anything starts); a loopback socket bound;
//! `/run/efs-proxy/FS_ID.PORT/` made (0700) with `mount.json`; the supervisor started
//! detached (a re-exec of this binary with `setsid`, holding the socket); the proxy's own
//! readiness awaited (TLS verified, READY bind, `status.json`); then
//! `mount -t nfs4 -o …,port=PORT 127.0.0.1:/PATH MOUNTPOINT`. If the proxy is not ready in time
//! or the NFS mount fails: the diagnosis (`efs-proxy check`) on stderr, the supervisor and
//! proxy stopped, the state removed, exit status 32 (mount(8)'s "mount failure").

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

use rustix::process::Signal;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{ArgAction, Args, ValueEnum};
use efs_proxy::internal::mount::options::{self, Kind, MountPlan};
use efs_proxy::internal::mount::{mountinfo, state};
use serde_json::{Value, json};

/// mount(8)'s exit status for a bad invocation.
pub(crate) const EXIT_USAGE: u8 = 1;
/// mount(8)'s exit status for a failed mount.
pub(crate) const EXIT_FAILURE: u8 = 32;
/// Seconds the proxy is kept after its mount disappeared (a remount shows no gap, but a
/// quick `umount; mount` of the same mount point then still gets a fresh proxy).
const GRACE_SECS: u64 = 5;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum KindArg {
    /// Amazon S3 Files (NFSv4.2, TLS and IAM always).
    S3files,
    /// Amazon EFS (NFSv4.1, TLS always; IAM with -o iam).
    Efs,
}

#[derive(Args, Debug)]
pub(crate) struct MountArgs {
    /// The file system and the path in it: fs-0123456789abcdef0 or fs-0123456789abcdef0:/dir.
    #[arg(value_name = "FS_ID[:/PATH]")]
    pub spec: String,
    /// Where to mount it (an existing directory).
    pub mountpoint: PathBuf,
    /// Mount options, comma-separated (efs-utils' tls, iam, accesspoint=, awsprofile=,
    /// region=, az=, mounttargetip=, tlsport=; this helper's target=HOST:PORT, cafile=PEM,
    /// readytimeout=SECS; NFS options of nfs(5) are passed on). See docs/mount.md.
    #[arg(short = 'o', value_name = "OPTIONS", action = ArgAction::Append)]
    pub options: Vec<String>,
    /// File system type [default: s3files, or the helper's name: mount.efs mounts efs].
    #[arg(short = 't', long = "type", value_enum)]
    pub kind: Option<KindArg>,
    /// Sloppy (mount(8) -s): ignore unknown options with a warning instead of failing.
    #[arg(short = 's')]
    pub sloppy: bool,
    /// Fake (mount(8) -f): check the options and print what would run; start nothing.
    #[arg(short = 'f')]
    pub fake: bool,
    /// No mtab (mount(8) -n): accepted; there is no mtab to write.
    #[arg(short = 'n')]
    pub no_mtab: bool,
    /// Verbose: print each step.
    #[arg(short = 'v')]
    pub verbose: bool,
}

/// A failed mount: the line to print and the exit status.
pub(crate) struct Failure {
    pub code: u8,
    pub text: String,
}

fn fail<T>(code: u8, text: impl Into<String>) -> Result<T, Failure> {
    Err(Failure {
        code,
        text: text.into(),
    })
}

/// This binary, for re-execution: `/proc/self/exe` works even after a package upgrade
/// replaced the file.
pub(crate) fn self_exe() -> PathBuf {
    let proc_exe = PathBuf::from("/proc/self/exe");
    if proc_exe.exists() {
        return proc_exe;
    }
    std::env::current_exe().unwrap_or(proc_exe)
}

/// argv[0] dispatch: run as `mount.s3files` / `mount.efs`, this is the mount helper.
pub(crate) fn helper_main() -> Option<ExitCode> {
    let argv0 = std::env::args_os().next()?;
    let (name, kind) = match Path::new(&argv0).file_name()?.to_str()? {
        "mount.s3files" => ("mount.s3files", KindArg::S3files),
        "mount.efs" => ("mount.efs", KindArg::Efs),
        _ => return None,
    };
    #[derive(clap::Parser)]
    #[command(
        version,
        about = "Mount Amazon S3 Files or EFS through efs-proxy (TLS + IAM)"
    )]
    struct Helper {
        #[command(flatten)]
        args: MountArgs,
    }
    use clap::{CommandFactory, FromArgMatches};
    let matches = Helper::command().name(name).get_matches();
    let mut helper = match Helper::from_arg_matches(&matches) {
        Ok(h) => h,
        Err(e) => e.exit(),
    };
    helper.args.kind.get_or_insert(kind);
    Some(mount_main(helper.args, name))
}

/// `efs-proxy mount` (and the helper).
pub(crate) fn mount_main(args: MountArgs, prog: &str) -> ExitCode {
    match mount(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{prog}: {}", f.text);
            ExitCode::from(f.code)
        }
    }
}

fn kind_of(args: &MountArgs) -> Kind {
    match args.kind.unwrap_or(KindArg::S3files) {
        KindArg::S3files => Kind::S3Files,
        KindArg::Efs => Kind::Efs,
    }
}

/// Options and mount point, checked before anything starts.
pub(crate) fn settle(args: &MountArgs) -> Result<(MountPlan, PathBuf), Failure> {
    let joined = args.options.join(",");
    let env_region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .ok();
    let plan = options::parse(options::Request {
        kind: kind_of(args),
        spec: &args.spec,
        options: &joined,
        env_region: env_region.as_deref(),
        sloppy: args.sloppy,
    })
    .or_else(|e| fail(EXIT_USAGE, e.0))?;
    let mountpoint = match std::fs::canonicalize(&args.mountpoint) {
        Ok(p) if p.is_dir() => p,
        Ok(p) => {
            return fail(
                EXIT_FAILURE,
                format!("mount point {} is not a directory", p.display()),
            );
        }
        Err(e) => {
            return fail(
                EXIT_FAILURE,
                format!("mount point {}: {e}", args.mountpoint.display()),
            );
        }
    };
    if let Some((dir, port)) = managed_mount_at(&mountpoint) {
        let table = mountinfo::parse(&super::mount_daemon::mount_table());
        let here = table
            .iter()
            .any(|e| e.is_proxy_mount(port) && Path::new(&e.mount_point) == mountpoint);
        if !dir.join("mounted").exists() {
            return fail(
                EXIT_FAILURE,
                format!(
                    "a mount on {} is in progress (state {})",
                    mountpoint.display(),
                    dir.display()
                ),
            );
        }
        if here {
            return fail(
                EXIT_FAILURE,
                format!(
                    "{} is already mounted through efs-proxy (port {port}, state {}): run \
                     efs-proxy umount {0} first",
                    mountpoint.display(),
                    dir.display()
                ),
            );
        }
        if !table.iter().any(|e| e.is_proxy_mount(port)) {
            // Unmounted, its proxy in the grace period: `umount; mount` must just work.
            super::mount_admin::stop(&dir);
        }
    }
    Ok((plan, mountpoint))
}

/// The state directory of a live mount at `mountpoint`, with its port.
pub(crate) fn managed_mount_at(mountpoint: &Path) -> Option<(PathBuf, u16)> {
    state::mount_dirs(&state::root())
        .into_iter()
        .find_map(|dir| {
            let v = read_json(&dir, "mount.json")?;
            let live = state::read_pid(&dir, "supervisor.pid")
                .is_some_and(|pid| state::process_runs(pid, &dir.to_string_lossy()));
            (live && v["mountpoint"].as_str() == mountpoint.to_str())
                .then(|| (dir.clone(), v["port"].as_u64().unwrap_or(0) as u16))
        })
}

/// A running proxy for the same file system with the same identity and trust, serving a
/// mount now: its state directory and port.
fn shared_proxy(plan: &MountPlan) -> Option<(PathBuf, u16)> {
    let table = super::mount_daemon::mount_table();
    let args = json!(plan.proxy_args());
    state::mount_dirs(&state::root())
        .into_iter()
        .find_map(|dir| {
            let v = read_json(&dir, "mount.json")?;
            let port = u16::try_from(v["port"].as_u64()?).ok()?;
            let live = state::read_pid(&dir, "supervisor.pid")
                .is_some_and(|pid| state::process_runs(pid, &dir.to_string_lossy()));
            let same = v["proxy_args"] == args
                && v["type"].as_str() == Some(plan.kind.name())
                && plan.tls_port.is_none_or(|p| p == port);
            (live && same && mountinfo::has_proxy_mount(&table, port)).then_some((dir, port))
        })
}

pub(crate) fn read_json(dir: &Path, name: &str) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(dir.join(name)).ok()?).ok()
}

fn mount(args: &MountArgs) -> Result<(), Failure> {
    let (plan, mountpoint) = settle(args)?;
    for warning in &plan.warnings {
        eprintln!("warning: {warning} (ignored: -s)");
    }
    if args.fake {
        println!(
            "would start efs-proxy {} and run: mount -t nfs4 -o {} {} {}",
            plan.proxy_args().join(" "),
            plan.nfs_options(plan.tls_port.unwrap_or(0)),
            plan.nfs_source(),
            mountpoint.display()
        );
        return Ok(());
    }
    if let Some((dir, port)) = shared_proxy(&plan) {
        // The kernel shares one NFS client among mounts of the same server, over the first
        // mount's connection: a second proxy for the same file system would carry nothing,
        // and stopping the first would hang the second mount. One proxy serves them all.
        if args.verbose {
            eprintln!(
                "efs-proxy: sharing the proxy on 127.0.0.1:{port} ({})",
                dir.display()
            );
        }
        return run_mount(&plan, port, &mountpoint);
    }
    let mut started = start(&plan, &mountpoint)?;
    let say = |text: String| {
        if args.verbose {
            eprintln!("{text}");
        }
    };
    say(format!(
        "efs-proxy: supervisor {} on 127.0.0.1:{}, state {}",
        started.child.id(),
        started.port,
        started.dir.display()
    ));
    if let Err(why) = wait_ready(&mut started, plan.ready_timeout) {
        abort(&mut started);
        diagnose(&plan);
        return fail(
            EXIT_FAILURE,
            format!(
                "efs-proxy for {} was not ready: {why}; nothing was mounted (the diagnosis \
                 above is `efs-proxy check {}`)",
                plan.fs_id,
                plan.proxy_args().join(" ")
            ),
        );
    }
    say(format!("efs-proxy: ready; mounting {}", plan.nfs_source()));
    if let Err(f) = run_mount(&plan, started.port, &mountpoint) {
        abort(&mut started);
        return Err(f);
    }
    // From now on a proxy that dies is restarted, whether or not the watch saw the mount yet.
    if let Err(e) = state::write_atomic(&started.dir, "mounted", b"") {
        eprintln!(
            "warning: cannot write {}/mounted: {e}",
            started.dir.display()
        );
    }
    say(format!(
        "mounted {}:{} on {} through efs-proxy on 127.0.0.1:{}",
        plan.fs_id,
        plan.path,
        mountpoint.display(),
        started.port
    ));
    Ok(())
}

/// A started supervisor.
struct Started {
    child: Child,
    dir: PathBuf,
    port: u16,
}

fn start(plan: &MountPlan, mountpoint: &Path) -> Result<Started, Failure> {
    let root = state::root();
    state::ensure_root(&root).or_else(|e| fail(EXIT_FAILURE, format!("state directory: {e}")))?;
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", plan.tls_port.unwrap_or(0))).or_else(|e| {
            fail(
                EXIT_FAILURE,
                format!(
                    "cannot listen on 127.0.0.1:{}: {e}",
                    plan.tls_port.unwrap_or(0)
                ),
            )
        })?;
    let port = listener.local_addr().map_or(0, |a| a.port());
    let dir = state::create_mount_dir(&root, &format!("{}.{port}", plan.fs_id))
        .or_else(|e| fail(EXIT_FAILURE, format!("state directory: {e}")))?;
    let info = mount_json(plan, mountpoint, port, &dir);
    let spawned = state::write_atomic(&dir, "mount.json", format!("{info:#}\n").as_bytes())
        .and_then(|()| spawn_supervisor(&dir, &listener));
    match spawned {
        Ok(child) => Ok(Started { child, dir, port }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            fail(EXIT_FAILURE, format!("cannot start the proxy: {e}"))
        }
    }
}

fn mount_json(plan: &MountPlan, mountpoint: &Path, port: u16, dir: &Path) -> Value {
    json!({
        "type": plan.kind.name(),
        "fs_id": plan.fs_id,
        "path": plan.path,
        "region": plan.region,
        "mountpoint": mountpoint.to_string_lossy(),
        "port": port,
        "nfs_source": plan.nfs_source(),
        "nfs_options": plan.nfs_options(port),
        "proxy_args": plan.proxy_args(),
        "created": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        "grace_secs": GRACE_SECS,
        "log": dir.join("proxy.log").to_string_lossy(),
    })
}

/// Re-executes this binary as the supervisor, which starts a new session (no controlling
/// terminal: the terminal's hangup or Ctrl-C never reaches it), with the listening socket as
/// stdin, stdout on /dev/null, stderr to the log. A re-exec, not a fork: this process may hold threads, and a forked copy of a
/// threaded process may only call async-signal-safe functions until it execs.
fn spawn_supervisor(dir: &Path, listener: &std::net::TcpListener) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode_0600()
        .open(dir.join("proxy.log"))?;
    // The listening socket goes down as stdin, as inetd hands one to a `wait` service:
    // passed without any descriptor-number bookkeeping or code between fork and exec.
    let socket = OwnedFd::from(listener.try_clone()?);
    let mut cmd = Command::new(self_exe());
    cmd.arg0("efs-proxy")
        .arg("mount-supervisor")
        .arg(dir)
        .arg("--parent")
        .arg(std::process::id().to_string())
        .stdin(Stdio::from(socket))
        .stdout(Stdio::null())
        .stderr(log);
    cmd.spawn()
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

/// Waits for the proxy's `status.json` to say ready.
fn wait_ready(started: &mut Started, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = read_json(&started.dir, "status.json") {
            match status["state"].as_str() {
                Some("ready") => return Ok(()),
                Some("failed") => {
                    return Err(status["error"].as_str().unwrap_or("failed").to_string());
                }
                _ => {}
            }
        }
        if let Ok(Some(exit)) = started.child.try_wait() {
            return Err(format!(
                "the supervisor exited ({exit}); {}",
                log_tail(&started.dir)
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no READY bind within {} s (readytimeout=); {}",
                limit.as_secs(),
                log_tail(&started.dir)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The proxy log's last error or warning line, for the failure message.
fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("proxy.log")).unwrap_or_default();
    text.lines()
        .rev()
        .find(|l| l.contains("ERROR") || l.contains("WARN") || l.starts_with("error:"))
        .map_or_else(
            || "the proxy logged no error".to_string(),
            |l| format!("proxy log: {}", l.trim()),
        )
}

/// Stops the supervisor (which stops the proxy) and removes the state.
fn abort(started: &mut Started) {
    if let Ok(pid) = i32::try_from(started.child.id()) {
        super::mount_daemon::send_signal(pid, Signal::TERM);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = started.child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Ok(None) = started.child.try_wait() {
        let _ = started.child.kill();
        let _ = started.child.wait();
    }
    if let Some(pid) = state::read_pid(&started.dir, "proxy.pid")
        && state::process_runs(pid, &started.dir.to_string_lossy())
        && let Ok(pid) = i32::try_from(pid)
    {
        super::mount_daemon::send_signal(pid, Signal::KILL);
    }
    let _ = std::fs::remove_dir_all(&started.dir);
}

/// `efs-proxy check` with the mount's options, its report on stderr.
fn diagnose(plan: &MountPlan) {
    let _ = std::io::stdout().flush();
    eprintln!("diagnosis (efs-proxy check):");
    let stderr = std::io::stderr().as_fd().try_clone_to_owned();
    let mut cmd = Command::new(self_exe());
    cmd.arg0("efs-proxy")
        .arg("check")
        .args(plan.proxy_args())
        .arg("--nfs-null");
    cmd.stdin(Stdio::null());
    if let Ok(fd) = stderr {
        cmd.stdout(Stdio::from(fd));
    }
    if let Err(e) = cmd.status() {
        eprintln!("(cannot run efs-proxy check: {e})");
    }
}

/// The program that performs the NFS mount: `mount`, or `EFS_PROXY_MOUNT_PROGRAM` (tests).
fn program(env: &str, default: &str) -> String {
    std::env::var(env)
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn run_mount(plan: &MountPlan, port: u16, mountpoint: &Path) -> Result<(), Failure> {
    let mount = program("EFS_PROXY_MOUNT_PROGRAM", "mount");
    let opts = plan.nfs_options(port);
    let status = Command::new(&mount)
        .args(["-t", "nfs4", "-o", &opts, &plan.nfs_source()])
        .arg(mountpoint)
        .stdin(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => fail(
            s.code()
                .and_then(|c| u8::try_from(c).ok())
                .filter(|c| *c != 0)
                .unwrap_or(EXIT_FAILURE),
            format!(
                "{mount} -t nfs4 -o {opts} {} {} failed ({s}); the proxy was stopped",
                plan.nfs_source(),
                mountpoint.display()
            ),
        ),
        Err(e) => fail(EXIT_FAILURE, format!("cannot run {mount}: {e}")),
    }
}

/// `EFS_PROXY_UMOUNT_PROGRAM` or `umount` (for `efs-proxy umount`).
pub(crate) fn umount_program() -> String {
    program("EFS_PROXY_UMOUNT_PROGRAM", "umount")
}
