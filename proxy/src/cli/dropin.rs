//! `efs-proxy CONFIG [--tls] [--no-direct-s3-read]`: the interface efs-utils' mount helpers
//! and watchdog use (docs/protocol.md §8.1), so this binary can replace
//! `/usr/sbin/efs-proxy` with `mount -t efs` / `mount -t s3files` unchanged.
//!
//! The process contract: the pid file holds `"<pid>\n"`; SIGTERM removes it and exits 0;
//! SIGHUP (TLS mode) reloads the certificate, key and CA for new connections, and a failed
//! reload keeps the previous ones (AWS's proxy silently stops reloading after one failure).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use efs_proxy::internal::dropin::RotatingFile;
use efs_proxy::internal::dropin::{self, DropInConfig, LogDestination};
use efs_proxy::{Auth, ProxyBuilder, ProxyHandle, Trust};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Runs the proxy from an efs-utils config file until SIGTERM.
pub(crate) fn main(config_path: &Path, tls: bool) -> anyhow::Result<()> {
    let config = dropin::load(config_path)?;
    init_logging(&config)?;
    if config.fips && !efs_proxy::internal::upstream::FIPS {
        bail!(
            "{}: fips = yes asks for FIPS 140-3 validated cryptography, which this build does \
             not have (rustls with ring): build with `cargo build --release -p efs-proxy \
             --features fips` (rustls on aws-lc-rs in FIPS mode; needs cmake and Go), set \
             fips = no, or use AWS's efs-proxy for FIPS mounts",
            config_path.display()
        );
    }
    if efs_proxy::internal::upstream::FIPS {
        info!(
            "FIPS build: TLS on aws-lc-rs in FIPS mode (FIPS cipher suites and key exchange only)"
        );
    }
    let runtime = super::runtime().context("starting the async runtime")?;
    runtime.block_on(serve(config_path, config, tls))
}

async fn serve(path: &Path, config: DropInConfig, tls: bool) -> anyhow::Result<()> {
    let builder = builder(path, &config, tls)?;
    // As efs-proxy: the pid file is written before the port listens, so whoever sees the port
    // (the mount helper's probe, the watchdog) also finds the pid. A failed start removes it.
    let pid = PidFile::write(&config.pid_file);
    let proxy = builder.start().await?;
    info!(
        "efs-proxy {} (drop-in) listening on {}, forwarding to {} ({})",
        env!("CARGO_PKG_VERSION"),
        config.accept,
        config.connect,
        if tls { "TLS" } else { "plaintext" }
    );

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = hup.recv() => reload(path, &proxy),
        }
    }
    info!("SIGTERM: shutting down");
    proxy.shutdown().await;
    drop(pid);
    Ok(())
}

/// Maps the config file onto the library's builder.
fn builder(path: &Path, config: &DropInConfig, tls: bool) -> anyhow::Result<ProxyBuilder> {
    // efs-proxy listens wherever `accept` says (efs-utils always writes 127.0.0.1); kept, but
    // said, since the listener hands out this host's IAM identity.
    if !config.accept.ip().is_loopback() {
        warn!(
            "{}: accept = {} is not a loopback address: anyone who can reach it gets NFS \
             sessions signed with this host's IAM identity",
            path.display(),
            config.accept
        );
    }
    // efs-proxy gives TCP, TLS and bind together `retry_nfs_mount_command_timeout_sec - 1`:
    // one deadline, so a slow path fails before the mount helper stops waiting.
    let limit = Duration::from_secs(config.init_timeout_sec.saturating_sub(1).max(1));
    let builder = ProxyBuilder::new(config.connect.clone())
        .listen(config.accept)
        .allow_remote(true)
        .allowed_uids(config.allow_uid.clone())
        .connect_timeout(limit)
        .bind_timeout(limit)
        .connect_deadline(limit)
        .drain_timeout(Duration::from_secs(2));
    if !tls {
        return Ok(builder.plaintext());
    }
    let files = CertificateFiles::of(path, config)?;
    let mut builder = builder
        .auth(Auth::CertificateFiles {
            cert: files.cert,
            key: files.key,
        })
        .trust(trust(path, config));
    match &config.check_host {
        Some(name) => builder = builder.server_name(name.clone()),
        None => {
            warn!(
                "{}: no checkHost: the server certificate's name is not checked and no SNI \
                 is sent (as efs-proxy)",
                path.display()
            );
            builder = builder.skip_hostname_verification().without_sni();
        }
    }
    Ok(builder)
}

/// The client certificate and key named in the config file.
struct CertificateFiles {
    cert: PathBuf,
    key: PathBuf,
}

impl CertificateFiles {
    fn of(path: &Path, config: &DropInConfig) -> anyhow::Result<CertificateFiles> {
        let file = path.display();
        let cert = config.cert.as_ref().with_context(|| {
            format!("{file}: --tls needs `cert` in [efs] (the client certificate)")
        })?;
        let key = config
            .key
            .as_ref()
            .with_context(|| format!("{file}: --tls needs `key` in [efs] (the private key)"))?;
        Ok(CertificateFiles {
            cert: cert.clone(),
            key: key.clone(),
        })
    }
}

/// `CAfile` and the system roots, or no verification at all without `CAfile` (efs-utils'
/// `verify=0`), said loudly.
fn trust(path: &Path, config: &DropInConfig) -> Trust {
    match &config.ca_file {
        Some(ca) => Trust::CaFileAndSystemRoots(ca.clone()),
        None => {
            warn!(
                "{}: no CAfile: the server certificate is NOT verified (efs-utils verify=0); \
                 anyone on the path can impersonate the mount target",
                path.display()
            );
            Trust::NoVerify
        }
    }
}

/// SIGHUP: re-reads the config file and loads its certificate, key and CA for new
/// connections; a failed reload keeps the previous ones.
fn reload(path: &Path, proxy: &ProxyHandle) {
    let result = dropin::load(path)
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            let files = CertificateFiles::of(path, &config)?;
            let trust = trust(path, &config);
            Ok(proxy.reload_certificate(&files.cert, &files.key, &trust)?)
        });
    match result {
        Ok(true) => info!("SIGHUP: reloaded certificate, key and CA; new connections use them"),
        Ok(false) => info!("SIGHUP ignored: no TLS in use (started without --tls)"),
        Err(e) => error!(
            "SIGHUP: reload failed, keeping the previous certificate: {}",
            super::report(&e)
        ),
    }
}

/// The pid file: `"<pid>\n"`, removed when dropped (SIGTERM, or a fatal error). Only a file
/// this process wrote is removed.
struct PidFile(Option<PathBuf>);

impl PidFile {
    fn write(path: &Path) -> PidFile {
        // Like efs-proxy, a pid file that cannot be written is not fatal (for non-TLS mounts
        // its directory does not exist); the watchdog tolerates its absence. A symbolic link
        // or other planted file is never followed or overwritten, and said loudly.
        match dropin::write_pid_file(path) {
            Ok(()) => PidFile(Some(path.to_path_buf())),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                error!("pid file: {e}");
                PidFile(None)
            }
            Err(e) => {
                warn!("cannot write pid file {}: {e}", path.display());
                PidFile(None)
            }
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Logs to the configured destination at the configured level, and errors to stderr too
/// (the mount helper quotes stderr in its own log when the proxy dies during a mount).
fn init_logging(config: &DropInConfig) -> anyhow::Result<()> {
    let level = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("warn"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_filter(LevelFilter::ERROR);
    let main = match &config.log {
        LogDestination::File {
            path,
            max_bytes,
            file_count,
        } => {
            let file = RotatingFile::open(path, *max_bytes, *file_count)
                .with_context(|| format!("opening the log file {}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(file)
                    .with_ansi(false)
                    .with_filter(level)
                    .boxed(),
            )
        }
        LogDestination::Stdout => Some(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stdout)
                .with_ansi(false)
                .with_filter(level)
                .boxed(),
        ),
        LogDestination::Off => None,
    };
    tracing_subscriber::registry()
        .with(super::without_request_dumps())
        .with(stderr)
        .with(main)
        .init();
    Ok(())
}
