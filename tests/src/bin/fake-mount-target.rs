//! `fake-mount-target`: the test mount target as a command, for scripts (the end-to-end test
//! with ganesha and the kernel client, the demo, benchmarks).
//!
//! On start it writes a fresh PKI into `--pki-dir` (ca.pem, server.pem/key, client.pem/key) and
//! prints `listening on ADDR` once the socket is bound.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use efs_proxy_tests::{
    Backend, BindBehaviour, FakeMountTarget, MountTargetConfig, Responder, SERVER_NAME, ServerTls,
    TestPki,
};

#[derive(Parser)]
#[command(
    name = "fake-mount-target",
    about = "A fake EFS / S3 Files mount target for tests"
)]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory for the generated CA, server and client certificates.
    #[arg(long)]
    pki_dir: PathBuf,
    /// Server name on the server certificate (also gets 127.0.0.1 and localhost).
    #[arg(long, default_value = SERVER_NAME)]
    server_name: String,
    /// Bind reply: ready, retry-later, error, prog-unavail, garbage, silent, close.
    #[arg(long, default_value = "ready")]
    bind: String,
    /// After bind: `echo`, `empty`, a reply size in bytes, or the HOST:PORT of an NFS server.
    #[arg(long, default_value = "echo")]
    backend: String,
    /// Accept handshakes without a client certificate.
    #[arg(long)]
    no_client_cert: bool,
    /// Serve plaintext instead of TLS.
    #[arg(long)]
    plaintext: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let args = Args::parse();
    let Some(bind) = BindBehaviour::parse(&args.bind) else {
        bail!("unknown --bind {:?}", args.bind);
    };
    let backend = match Responder::parse(&args.backend) {
        Some(responder) => Backend::Responder(responder),
        None => Backend::Relay(args.backend.parse().with_context(|| {
            format!(
                "--backend {:?}: not echo/empty/SIZE/HOST:PORT",
                args.backend
            )
        })?),
    };
    let pki = TestPki::generate(&[&args.server_name, "localhost", "127.0.0.1"])?;
    pki.write(&args.pki_dir)?;
    let tls = (!args.plaintext).then(|| ServerTls {
        chain: vec![pki.server.cert_der.clone()],
        key: pki.server.private_key(),
        require_client_cert: !args.no_client_cert,
    });
    let config = MountTargetConfig {
        tls,
        bind,
        backend,
        max_record_size: efs_rpc::DEFAULT_MAX_RECORD_SIZE,
    };
    let target = FakeMountTarget::start(args.listen, config).await?;
    println!("listening on {}", target.addr());
    std::io::stdout().flush()?;
    tokio::signal::ctrl_c().await.ok();
    Ok(())
}
