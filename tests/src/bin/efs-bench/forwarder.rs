//! The forwarders under test (direct, socat, stunnel, efs-proxy builds) and the services
//! they forward to, each a child process killed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use efs_proxy_tests::SERVER_NAME;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A child process killed on drop, with the address it serves.
pub(crate) struct Service {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
}

impl Service {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }
}

pub(crate) fn sibling(name: &str) -> anyhow::Result<PathBuf> {
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
pub(crate) async fn announced(program: &Path, args: &[String]) -> anyhow::Result<Service> {
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
pub(crate) async fn listening(
    program: &str,
    args: &[String],
    addr: SocketAddr,
) -> anyhow::Result<Service> {
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

pub(crate) fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// What the forwarders forward to: a TLS mount target (with its PKI) and a plaintext one.
pub(crate) struct Upstream {
    pub(crate) tls: SocketAddr,
    pub(crate) pki: PathBuf,
    pub(crate) plain: SocketAddr,
    /// The two fake mount targets (TLS, plaintext), stopped when this is dropped.
    services: [Service; 2],
}

impl Upstream {
    /// Starts the fake mount target twice with the same `backend` (`bench` for the bench
    /// responder, an address to relay to): behind TLS (stunnel and efs-proxy connect there)
    /// and in plaintext (direct and socat), each with its PKI under `dir/NAME` and
    /// `dir/NAME-plain`.
    pub(crate) async fn start(
        target_bin: &Path,
        dir: &Path,
        name: &str,
        backend: &str,
    ) -> anyhow::Result<Upstream> {
        let pki = dir.join(name);
        let plain_pki = dir.join(format!("{name}-plain"));
        let args = |pki: &Path| {
            let pki = pki.display().to_string();
            ["--pki-dir", &pki, "--backend", backend].map(String::from)
        };
        let tls = announced(target_bin, &args(&pki)).await?;
        let mut plain_args = args(&plain_pki).to_vec();
        plain_args.push("--plaintext".into());
        let plain = announced(target_bin, &plain_args).await?;
        Ok(Upstream {
            tls: tls.addr,
            pki,
            plain: plain.addr,
            services: [tls, plain],
        })
    }

    /// The process of the mount target a forwarder of this kind connects to.
    fn target_pid(&self, kind: &Kind) -> u32 {
        match kind {
            Kind::Direct | Kind::Socat { .. } => self.services[1].pid(),
            Kind::Stunnel | Kind::Proxy { .. } => self.services[0].pid(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Direct,
    Socat { buffer: usize },
    Stunnel,
    Proxy { bin: PathBuf },
}

#[derive(Debug, Clone)]
pub(crate) struct Forwarder {
    pub(crate) name: String,
    pub(crate) kind: Kind,
}

/// A forwarder started for one measurement.
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    pub(crate) pid: Option<u32>,
    /// The mount target it connects to (its CPU time is measured too).
    pub(crate) target_pid: u32,
    pub(crate) forks: bool,
    pub(crate) _service: Option<Service>,
}

pub(crate) fn proxy_args(target: SocketAddr, pki: &Path, scale: bool) -> Vec<String> {
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

pub(crate) async fn start(
    fwd: &Forwarder,
    up: &Upstream,
    scratch: &Path,
) -> anyhow::Result<Running> {
    let target_pid = up.target_pid(&fwd.kind);
    match &fwd.kind {
        Kind::Direct => Ok(Running {
            addr: up.plain,
            pid: None,
            target_pid,
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
                target_pid,
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
                target_pid,
                forks: false,
                _service: Some(service),
            })
        }
        Kind::Proxy { bin } => {
            let service = announced(bin, &proxy_args(up.tls, &up.pki, false)).await?;
            Ok(Running {
                addr: service.addr,
                pid: Some(service.pid()),
                target_pid,
                forks: false,
                _service: Some(service),
            })
        }
    }
}
