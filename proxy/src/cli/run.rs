//! `efs-proxy run`: listen for NFS clients and forward them to the mount target.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use efs_proxy::{ClientIdentity, Proxy, ProxyConfig, TlsSettings, Trust};
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct RunArgs {
    /// Address dialled for every server connection: the mount target or the NLB, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    target: String,
    /// Name for SNI and certificate verification: the mount target's DNS name (e.g.
    /// fs-0123456789abcdef0.s3files.us-east-1.on.aws), even when --target is an NLB.
    #[arg(long, value_name = "NAME")]
    server_name: String,
    /// Where NFS clients connect. 127.0.0.1:0 picks a free port (printed on start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:20049")]
    listen: SocketAddr,
    /// PEM file of trusted CA certificates; without it, the system trust store is used.
    #[arg(long, value_name = "PEM", conflicts_with = "no_verify")]
    ca_file: Option<PathBuf>,
    /// Client certificate (PEM) presented to the server.
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// Do not verify the server certificate at all (testing only).
    #[arg(long)]
    no_verify: bool,
    /// Seconds allowed for each TCP connect attempt and for the TLS handshake.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    connect_timeout: u64,
    /// Seconds allowed for the bind_client_to_partition exchange.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    bind_timeout: u64,
    /// Largest RPC record accepted in either direction, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = efs_rpc::DEFAULT_MAX_RECORD_SIZE)]
    max_record_size: usize,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let trust = match (args.no_verify, args.ca_file) {
        (true, _) => Trust::NoVerify,
        (false, Some(path)) => Trust::CaFile(path),
        (false, None) => Trust::SystemRoots,
    };
    let identity = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => Some(ClientIdentity::from_pem_files(cert, key)?),
        _ => None,
    };
    let mut config = ProxyConfig::new(args.target);
    config.listen = args.listen;
    config.connect_timeout = Duration::from_secs(args.connect_timeout);
    config.bind_timeout = Duration::from_secs(args.bind_timeout);
    config.max_record_size = args.max_record_size;
    config.tls = Some(TlsSettings {
        server_name: args.server_name,
        trust,
        verify_hostname: true,
        identity,
    });

    let proxy = Proxy::bind(config).await?;
    let addr = proxy.local_addr().context("reading the listen address")?;
    announce(addr)?;

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    proxy.run(shutdown, Duration::from_secs(5)).await;
    Ok(())
}

/// Prints the one stdout line scripts wait for.
fn announce(addr: SocketAddr) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()?;
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the proxy with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
