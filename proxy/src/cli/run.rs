//! `efs-proxy run`: listen for NFS clients and forward them to the mount target.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use efs_proxy::config::Keepalive;
use efs_proxy::{Auth, ProxyBuilder, Trust};

#[derive(Args)]
pub struct RunArgs {
    /// Address dialled for every server connection: the mount target or the NLB, HOST:PORT
    /// [default with --fs-id: the mount target's DNS name, port 2049].
    #[arg(long, value_name = "HOST:PORT", required_unless_present = "fs_id")]
    target: Option<String>,
    /// Name for SNI and certificate verification: the mount target's DNS name (e.g.
    /// fs-0123456789abcdef0.s3files.us-east-1.on.aws), even when --target is an NLB
    /// [default with --fs-id: derived as efs-utils does].
    #[arg(long, value_name = "NAME", required_unless_present = "fs_id")]
    server_name: Option<String>,
    /// Where NFS clients connect. 127.0.0.1:0 picks a free port (printed on start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:20049")]
    listen: SocketAddr,
    /// PEM file of trusted CA certificates; without it, the system trust store is used.
    #[arg(long, value_name = "PEM", conflicts_with = "no_verify")]
    ca_file: Option<PathBuf>,
    /// Client certificate (PEM) presented to the server.
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of the client certificate. With --fs-id and no --cert: the key of
    /// the certificate the proxy makes (created, RSA-3072, mode 0600, if the file does not
    /// exist; e.g. efs-utils' /etc/amazon/efs/privateKey.pem) [default: a new key in memory].
    #[arg(long, value_name = "PEM")]
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
    /// Close a client connection when its calls get no answer for this many seconds, so the
    /// NFS client reconnects (0: wait forever, as AWS's efs-proxy).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    server_timeout: u64,
    /// TCP keepalive idle seconds on server connections (probes every 10 s, 3 probes; 0: off).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    keepalive: u64,
    /// Never open more than one server connection per client connection, whatever the
    /// server's scale-up configuration says.
    #[arg(long)]
    no_scale_up: bool,
    #[command(flatten)]
    iam: super::iam::IamRunArgs,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let trust = match (args.no_verify, args.ca_file) {
        (true, _) => Trust::NoVerify,
        (false, Some(path)) => Trust::CaFile(path),
        (false, None) => Trust::SystemRoots,
    };
    let plan = super::iam::plan(
        &args.iam,
        args.target,
        args.server_name,
        args.cert.as_deref(),
        args.key.as_deref(),
    )
    .await?;
    let auth = match (plan.iam, args.cert, args.key) {
        (Some(iam), _, _) => Auth::Iam(iam),
        (None, Some(cert), Some(key)) => Auth::CertificateFiles { cert, key },
        _ => Auth::None,
    };
    let builder = ProxyBuilder::new(plan.target)
        .server_name(plan.server_name)
        .listen(args.listen)
        .trust(trust)
        .auth(auth)
        .connect_timeout(Duration::from_secs(args.connect_timeout))
        .bind_timeout(Duration::from_secs(args.bind_timeout))
        .max_record_size(args.max_record_size)
        .server_timeout((args.server_timeout > 0).then(|| Duration::from_secs(args.server_timeout)))
        .keepalive((args.keepalive > 0).then(|| Keepalive {
            idle: Duration::from_secs(args.keepalive),
            ..Default::default()
        }))
        .scale_up(!args.no_scale_up);
    let proxy = builder.start().await?;
    announce(proxy.local_addr())?;
    wait_for_signal().await;
    proxy.shutdown().await;
    Ok(())
}

/// Prints the one stdout line scripts wait for.
fn announce(addr: SocketAddr) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()?;
    Ok(())
}

/// Returns on SIGTERM or SIGINT.
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the proxy with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}
