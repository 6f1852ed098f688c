//! Runs the real `efs-proxy` binary the way scripts do: waits for its `listening on ADDR` line
//! and keeps its log (stderr) for assertions.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `efs-proxy` binary to run: `EFS_PROXY_BIN` if set, else the one cargo built for the
/// calling test (`env!("CARGO_BIN_EXE_efs-proxy")`, passed in by the caller).
pub fn binary(default: &Path) -> PathBuf {
    std::env::var_os("EFS_PROXY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| default.to_path_buf())
}

/// A running `efs-proxy`, killed when dropped.
pub struct ProxyProcess {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl ProxyProcess {
    /// Starts `efs-proxy ARGS` and waits (up to 30 s) for `listening on ADDR`.
    pub async fn spawn<I, S>(bin: &Path, args: I) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(binary(bin));
        command.args(args).env_remove("RUST_LOG");
        Self::spawn_command(command).await
    }

    /// Like [`spawn`](Self::spawn), with only `PATH` and `env` in the environment: for
    /// credential tests, which must not see the caller's AWS settings.
    pub async fn spawn_with_env<I, S>(
        bin: &Path,
        args: I,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(binary(bin));
        only(command.args(args), env);
        Self::spawn_command(command).await
    }

    /// Starts `command` (which runs `efs-proxy`, possibly through a wrapper such as
    /// `prlimit` or `setpriv`) and waits as [`spawn`](Self::spawn) does.
    pub async fn spawn_command(mut command: Command) -> anyhow::Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawning efs-proxy")?;
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().context("stderr")?;
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        let addr = match first {
            Ok(Ok(Some(line))) => line
                .strip_prefix("listening on ")
                .with_context(|| format!("unexpected first stdout line {line:?}"))?
                .parse()?,
            _ => {
                let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                bail!(
                    "efs-proxy did not announce its address (exit: {status:?}); log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Ok(ProxyProcess { child, addr, log })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to `limit` for `needle` to appear in the log; returns the log either way.
    pub async fn wait_for_log(&self, needle: &str, limit: Duration) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return Ok(log);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(log);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().context("already exited")?;
        Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await?;
        Ok(tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await??)
    }
}

/// Runs `efs-proxy ARGS` to completion (30 s limit) with only `PATH` and `env` in the
/// environment: exit code, stdout, stderr.
pub async fn run_to_exit_with_env<I, S>(
    bin: &Path,
    args: I,
    env: &[(&str, &str)],
) -> anyhow::Result<(Option<i32>, String, String)>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(binary(bin));
    only(command.args(args), env);
    output(command).await
}

/// Runs `efs-proxy ARGS` to completion (with a 30 s limit): exit code, stdout, stderr.
pub async fn run_to_exit<I, S>(bin: &Path, args: I) -> anyhow::Result<(Option<i32>, String, String)>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(binary(bin));
    command.args(args);
    output(command).await
}

/// Gives `command` an environment of `PATH` and `env` alone.
fn only(command: &mut Command, env: &[(&str, &str)]) {
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied());
}

/// Runs `command` without input, killed after 30 s: exit code, stdout, stderr.
async fn output(mut command: Command) -> anyhow::Result<(Option<i32>, String, String)> {
    let child = command.stdin(Stdio::null()).kill_on_drop(true).output();
    let out = tokio::time::timeout(Duration::from_secs(30), child).await??;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}
