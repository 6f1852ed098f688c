//! `efs-proxy umount`, `efs-proxy mounts` and `efs-proxy install-mount-helper`.

use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use efs_proxy::internal::mount::{mountinfo, state};
use rustix::process::Signal;
use serde_json::{Value, json};

use super::mount::{read_json, umount_program};
use super::mount_daemon::mount_table;

#[derive(Args, Debug)]
pub(crate) struct UmountArgs {
    /// The mount point of a mount made by `efs-proxy mount` (or mount -t s3files / efs).
    pub mountpoint: PathBuf,
}

#[derive(Args, Debug)]
pub(crate) struct MountsArgs {
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct InstallArgs {
    /// Which helpers: s3files (mount.s3files), efs (mount.efs), or both.
    #[arg(long = "as", value_delimiter = ',', default_value = "s3files", value_parser = ["s3files", "efs"])]
    pub names: Vec<String>,
    /// Replace an existing helper of that name (amazon-efs-utils' mount.efs, for one).
    #[arg(long)]
    pub force: bool,
    /// Where mount(8) looks for helpers.
    #[arg(long, default_value = "/sbin", value_name = "DIR")]
    pub dir: PathBuf,
}

/// `path` made absolute without touching the file system (a hung NFS mount point must not
/// hang `umount`).
fn absolute(path: &Path) -> PathBuf {
    let base = if path.is_absolute() {
        PathBuf::new()
    } else {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))
    };
    let mut out = PathBuf::from("/");
    for c in base.join(path).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Every state directory with its mount.json.
fn managed() -> Vec<(PathBuf, Value)> {
    state::mount_dirs(&state::root())
        .into_iter()
        .filter_map(|dir| read_json(&dir, "mount.json").map(|v| (dir, v)))
        .collect()
}

fn live_pid(dir: &Path, name: &str) -> Option<u32> {
    state::read_pid(dir, name).filter(|pid| state::process_runs(*pid, &dir.to_string_lossy()))
}

/// `efs-proxy umount MOUNTPOINT`: the NFS unmount, then the proxy and its state, at once.
pub(crate) fn umount_main(args: &UmountArgs) -> ExitCode {
    let mountpoint = absolute(&args.mountpoint);
    let owners = owners_of(&mountpoint);
    if owners.is_empty() {
        eprintln!(
            "efs-proxy umount: {} is not a mount made by efs-proxy (see efs-proxy mounts)",
            mountpoint.display()
        );
        return ExitCode::from(1);
    }
    let umount = umount_program();
    match Command::new(&umount)
        .arg(&mountpoint)
        .stdin(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!(
                "efs-proxy umount: {umount} {} failed ({s}); the proxy keeps serving the mount",
                mountpoint.display()
            );
            return ExitCode::from(32);
        }
        Err(e) => {
            eprintln!("efs-proxy umount: cannot run {umount}: {e}");
            return ExitCode::from(32);
        }
    }
    let table = mount_table();
    for (dir, info) in owners {
        let port = info["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0);
        if mountinfo::has_proxy_mount(&table, port) {
            println!("efs-proxy umount: the proxy on port {port} still serves other mounts; kept");
        } else {
            stop(&dir);
        }
    }
    ExitCode::SUCCESS
}

/// The proxies a mount point may hold: the one started for it, and the one serving the port
/// the mount table names (a shared proxy serves several mount points). They differ when the
/// kernel carried a second mount on an existing client of the same NFS server: its own
/// proxy must still go when it is unmounted.
fn owners_of(mountpoint: &Path) -> Vec<(PathBuf, Value)> {
    let table = mountinfo::parse(&mount_table());
    let port_here = table
        .iter()
        .find(|e| Path::new(&e.mount_point) == mountpoint && e.source.starts_with("127.0.0.1:"))
        .and_then(|e| {
            e.super_options
                .split(',')
                .find_map(|o| o.strip_prefix("port=")?.parse::<u64>().ok())
        });
    managed()
        .into_iter()
        .filter(|(_, v)| {
            v["mountpoint"].as_str() == mountpoint.to_str()
                || port_here.is_some_and(|port| v["port"].as_u64() == Some(port))
        })
        .collect()
}

/// SIGTERM to the supervisor and the proxy, SIGKILL after 10 s, then the state removed.
pub(crate) fn stop(dir: &Path) {
    let pids: Vec<u32> = ["supervisor.pid", "proxy.pid"]
        .iter()
        .filter_map(|name| live_pid(dir, name))
        .collect();
    let marker = dir.to_string_lossy().into_owned();
    for (signal, wait) in [(Signal::TERM, 10), (Signal::KILL, 2)] {
        let live: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|p| state::process_runs(*p, &marker))
            .collect();
        for pid in &live {
            if let Ok(pid) = i32::try_from(*pid) {
                super::mount_daemon::send_signal(pid, signal);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(wait);
        while Instant::now() < deadline && live.iter().any(|p| state::process_runs(*p, &marker)) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One mount as `mounts` shows it.
fn describe(dir: &Path, info: &Value) -> Value {
    let status = read_json(dir, "status.json").unwrap_or(Value::Null);
    let supervisor = live_pid(dir, "supervisor.pid");
    let proxy = live_pid(dir, "proxy.pid");
    let state = match (supervisor, proxy, status["state"].as_str()) {
        (None, None, _) => "stopped",
        (_, None, _) => "restarting",
        (_, _, Some(s)) => s,
        _ => "starting",
    };
    let port = info["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(0);
    let mut here: Vec<String> = mountinfo::parse(&mount_table())
        .into_iter()
        .filter(|e| e.is_proxy_mount(port))
        .map(|e| e.mount_point)
        .collect();
    if here.is_empty() {
        here.push(info["mountpoint"].as_str().unwrap_or("?").to_string());
    }
    json!({
        "mountpoint": here.join(","),
        "file_system": format!("{}:{}", info["fs_id"].as_str().unwrap_or("?"), info["path"].as_str().unwrap_or("/")),
        "type": info["type"],
        "port": info["port"],
        "state": state,
        "supervisor_pid": supervisor,
        "proxy_pid": proxy,
        "partition": status["partition"],
        "certificate_expiry": status["certificate_expiry"],
        "connections": status["connections_active"],
        "bytes_to_server": status["bytes_to_server"],
        "bytes_to_client": status["bytes_to_client"],
        "counters_age_secs": status["updated"].as_u64().map(|t| now().saturating_sub(t)),
        "state_dir": dir.to_string_lossy(),
        "log": info["log"],
    })
}

fn mib(v: &Value) -> String {
    v.as_u64()
        .map_or_else(|| "-".into(), |b| format!("{:.1}", b as f64 / 1_048_576.0))
}

fn expiry(v: &Value) -> String {
    match v.as_u64() {
        Some(t) if t > now() => format!("in {} min", (t - now()) / 60),
        Some(_) => "expired".into(),
        None => "-".into(),
    }
}

/// `efs-proxy mounts`.
pub(crate) fn mounts_main(args: &MountsArgs) -> ExitCode {
    let rows: Vec<Value> = managed().iter().map(|(d, v)| describe(d, v)).collect();
    if args.json {
        println!("{:#}", Value::Array(rows));
        return ExitCode::SUCCESS;
    }
    if rows.is_empty() {
        println!(
            "no mounts made by efs-proxy (state in {})",
            state::root().display()
        );
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<24} {:<34} {:>5} {:>7} {:<10} {:<17} {:<12} {:>5} {:>9} {:>9}",
        "MOUNTPOINT",
        "FILE SYSTEM",
        "PORT",
        "PID",
        "STATE",
        "PARTITION",
        "CERT EXPIRES",
        "CONNS",
        "SENT MiB",
        "RECV MiB"
    );
    for r in &rows {
        let text = |k: &str| {
            r[k].as_str()
                .map_or_else(|| "-".to_string(), str::to_string)
        };
        println!(
            "{:<24} {:<34} {:>5} {:>7} {:<10} {:<17} {:<12} {:>5} {:>9} {:>9}",
            text("mountpoint"),
            text("file_system"),
            r["port"],
            r["proxy_pid"]
                .as_u64()
                .map_or_else(|| "-".into(), |p| p.to_string()),
            text("state"),
            text("partition"),
            expiry(&r["certificate_expiry"]),
            r["connections"]
                .as_u64()
                .map_or_else(|| "-".into(), |c| c.to_string()),
            mib(&r["bytes_to_server"]),
            mib(&r["bytes_to_client"]),
        );
    }
    ExitCode::SUCCESS
}

/// `efs-proxy install-mount-helper`: symbolic links DIR/mount.NAME → this binary, never over
/// another program's helper without --force.
pub(crate) fn install_main(args: &InstallArgs) -> ExitCode {
    match install(args) {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("efs-proxy install-mount-helper: {e}");
            ExitCode::from(1)
        }
    }
}

fn install(args: &InstallArgs) -> Result<Vec<String>, String> {
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut todo = Vec::new();
    let mut done = Vec::new();
    for name in &args.names {
        let path = args.dir.join(format!("mount.{name}"));
        match std::fs::symlink_metadata(&path) {
            Err(_) => todo.push(path),
            Ok(_) if std::fs::canonicalize(&path).ok().as_deref() == Some(exe.as_path()) => {
                done.push(format!("{} already runs {}", path.display(), exe.display()));
            }
            Ok(_) if args.force => todo.push(path),
            Ok(_) => {
                return Err(format!(
                    "{} exists and is another program (amazon-efs-utils' helper?); nothing was \
                     changed. Pass --force to replace it, or leave that name out (--as s3files)",
                    path.display()
                ));
            }
        }
    }
    for path in todo {
        let tmp = path.with_extension(format!("efs-proxy-tmp{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&exe, &tmp)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot install {}: {e}", path.display()))?;
        done.push(format!("installed {} -> {}", path.display(), exe.display()));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_absolute_without_the_file_system() {
        assert_eq!(
            absolute(Path::new("/mnt/a/../b/./c")),
            PathBuf::from("/mnt/b/c")
        );
        assert_eq!(absolute(Path::new("/..")), PathBuf::from("/"));
    }
}
