//! The `efs-webdav` command: serve a directory (the container's NFS mount) over WebDAV.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use efs_webdav::{BasicAuth, MemoryLimits, Server, ServerConfig};
use tracing_subscriber::EnvFilter;

/// WebDAV server for the efs-proxy container: publishes the S3 Files / EFS mount to macOS
/// Finder (and any WebDAV client). Finder's metadata files (`._*`, `.DS_Store`, `Icon\r`,
/// `.localized`) and WebDAV dead properties are kept in memory, never in the file system.
///
/// Basic authentication is on when WEBDAV_USER is set; the password comes from
/// WEBDAV_PASSWORD or --password-file (never from the command line, which `ps` shows).
///
/// Requests must name the server in Host (localhost, a 127.x address, [::1] or an --allow-host
/// name, with the --public-port) and carry no foreign Origin: web pages cannot use DNS
/// rebinding or cross-site requests on the files.
#[derive(Parser)]
#[command(name = "efs-webdav", version)]
struct Args {
    /// Address to listen on; port 0 picks a free one (printed as `listening on ADDR`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory to serve: the NFS mount point.
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    /// Confine the server to --root with chroot(2) before serving (needs root or
    /// CAP_SYS_CHROOT; the container's entrypoint sets it). Then the kernel resolves every
    /// path, symbolic links included, inside the root: an absolute link means the same path
    /// under the root, and no race between the per-request link check and the operation can
    /// reach a file outside. Without it the per-request check alone holds links inside.
    #[arg(long)]
    chroot: bool,
    /// User name for basic authentication.
    #[arg(long, env = "WEBDAV_USER", value_name = "NAME")]
    user: Option<String>,
    /// File whose first line is the password for basic authentication.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Memory for Finder metadata files (._*, .DS_Store), in MiB; past it, writes get 507.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    metadata_limit_mib: u64,
    /// Memory for WebDAV dead properties (PROPPATCH), in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 16)]
    props_limit_mib: usize,
    /// The port clients connect to, if not the listening one (the host's published port);
    /// requests whose Host or Origin names another port are refused.
    #[arg(long, env = "WEBDAV_PUBLIC_PORT", value_name = "PORT")]
    public_port: Option<u16>,
    /// A host name accepted in Host and Origin besides localhost, 127.x and [::1]; repeatable
    /// (the variable takes a comma-separated list).
    #[arg(
        long = "allow-host",
        env = "WEBDAV_ALLOW_HOSTS",
        value_name = "NAME",
        value_delimiter = ','
    )]
    allow_hosts: Vec<String>,
    /// Connections served at once; more wait in the listen backlog until one closes.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Seconds a request body may go without data; then the request fails (408), the upload
    /// is discarded and the connection closed.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout: u64,
    /// Seconds in-flight requests get to finish after SIGTERM.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    grace: u64,
    /// Log level (error, warn, info, debug, trace) or a tracing filter; RUST_LOG wins if set.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args.log_level);
    let result = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let auth = auth_from(&args)?;
    // True only then: with a password nobody gets in without it, and on a loopback address
    // only this machine (whose browsers the Host and Origin checks hold off) can connect.
    if auth.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!(
            "serving {} without authentication: whoever reaches this port can read and write \
             the file system; publish it on 127.0.0.1 only, or set WEBDAV_USER and \
             WEBDAV_PASSWORD (or --password-file)",
            args.listen
        );
    }
    let root = confine(&args)?;
    let limits = MemoryLimits {
        metadata_bytes: args.metadata_limit_mib.saturating_mul(1 << 20),
        props_bytes: args.props_limit_mib.saturating_mul(1 << 20),
    };
    let server = Server::bind(ServerConfig {
        auth,
        limits,
        grace: Duration::from_secs(args.grace),
        public_port: args.public_port,
        allow_hosts: args.allow_hosts.clone(),
        max_connections: args.max_connections as usize,
        body_timeout: Duration::from_secs(args.body_timeout),
        ..ServerConfig::new(args.listen, root)
    })
    .await?;
    let addr = server.local_addr().context("reading the listen address")?;
    tracing::info!(
        root = %args.root.display(),
        chroot = args.chroot,
        public_port = server.public_port(),
        "serving WebDAV on http://{addr}/"
    );
    announce(addr)?;
    server.run(stop_signal()).await;
    Ok(())
}

/// The directory to serve: `--root`, or with `--chroot` the new `/` after confining the whole
/// process to `--root` (files outside it, such as the password file, are read before).
fn confine(args: &Args) -> anyhow::Result<PathBuf> {
    if !args.chroot {
        return Ok(args.root.clone());
    }
    std::os::unix::fs::chroot(&args.root).with_context(|| {
        format!(
            "--chroot: cannot confine the server to --root {}: run it as root (or with \
             CAP_SYS_CHROOT) on an existing directory, or leave out --chroot",
            args.root.display()
        )
    })?;
    std::env::set_current_dir("/").context("--chroot: entering the new root")?;
    Ok(PathBuf::from("/"))
}

fn auth_from(args: &Args) -> anyhow::Result<Option<BasicAuth>> {
    let password = match (&args.password_file, std::env::var("WEBDAV_PASSWORD")) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("--password-file {}", file.display()))?;
            Some(text.lines().next().unwrap_or_default().to_string())
        }
        (None, Ok(p)) => Some(p),
        (None, Err(_)) => None,
    };
    match (&args.user, password) {
        (None, None) => Ok(None),
        (Some(user), Some(password)) => BasicAuth::new(user.clone(), password)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{e}; set WEBDAV_USER and WEBDAV_PASSWORD")),
        (Some(_), None) => anyhow::bail!(
            "WEBDAV_USER (--user) is set but there is no password: set WEBDAV_PASSWORD or \
             --password-file, or unset WEBDAV_USER to serve without authentication"
        ),
        (None, Some(_)) => {
            anyhow::bail!("a WebDAV password is set but no user: set WEBDAV_USER (--user) as well")
        }
    }
}

/// Prints the one stdout line scripts wait for.
fn announce(addr: SocketAddr) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()?;
    Ok(())
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing requests and stopping"),
        _ = int.recv() => tracing::info!("SIGINT: finishing requests and stopping"),
    }
}

fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
