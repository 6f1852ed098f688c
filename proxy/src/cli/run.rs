//! `efs-proxy run`: listen for NFS clients and forward them to the mount target.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use efs_proxy::Keepalive;

use super::target::TargetArgs;

#[derive(Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    server: TargetArgs,
    /// Where NFS clients connect. 127.0.0.1:0 picks a free port (printed on start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:20049")]
    listen: SocketAddr,
    /// Allow --listen on an address other than loopback. Every connection to the proxy gets
    /// an NFS session signed with this host's IAM identity: only for a trusted network.
    #[arg(long)]
    allow_remote: bool,
    /// Cap on client connections (lowered to fit the open-file limit). At the cap, the
    /// connection that has waited longest for its first record is closed to make room; if
    /// none waits, the new connection is closed.
    #[arg(long, value_name = "N", default_value_t = efs_proxy::internal::listen::DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    max_connections: usize,
    /// Close a client connection that sends no complete RPC record within this many seconds
    /// of connecting (no server connection is opened before its first record).
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    first_record_timeout: u64,
    /// Local users whose connections are served, besides root (the kernel NFS client) and
    /// the proxy's own user: numeric uids separated by commas, or `any` (AWS's proxy serves
    /// any user). Linux only.
    #[arg(long, value_name = "UIDS|any", value_parser = efs_proxy::UidPolicy::parse)]
    allow_uid: Option<efs_proxy::UidPolicy>,
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

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    let builder = super::iam::builder(&args.iam, args.server).await?;
    let builder = builder
        .listen(args.listen)
        .allow_remote(args.allow_remote)
        .allowed_uids(args.allow_uid.unwrap_or_default())
        .max_connections(args.max_connections)
        .first_record_timeout(Duration::from_secs(args.first_record_timeout))
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
