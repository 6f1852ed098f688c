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
    Backend, BindBehaviour, FakeMountTarget, IamVerifier, MountTargetConfig, Responder,
    SERVER_NAME, ServerTls, TestPki,
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
    /// After bind: `echo`, `empty`, `silent`, `bench`, a reply size in bytes, or the
    /// HOST:PORT of an NFS server to relay to.
    #[arg(long, default_value = "echo")]
    backend: String,
    /// Accept handshakes without a client certificate.
    #[arg(long)]
    no_client_cert: bool,
    /// Serve plaintext instead of TLS.
    #[arg(long)]
    plaintext: bool,
    /// Verify IAM client certificates with this secret access key (the SigV4 signature is
    /// recomputed from the certificate's public key); refused clients get a bind ERROR with
    /// the reason, then the connection is closed. Also read from FAKE_MOUNT_TARGET_IAM_SECRET.
    #[arg(
        long,
        value_name = "SECRET",
        env = "FAKE_MOUNT_TARGET_IAM_SECRET",
        hide_env_values = true,
        requires_all = ["iam_fs_id", "iam_service", "iam_region"]
    )]
    iam_secret: Option<String>,
    /// IAM check: the file system id this mount target serves.
    #[arg(long, value_name = "ID", requires = "iam_secret")]
    iam_fs_id: Option<String>,
    /// IAM check: s3files or efs (elasticfilesystem).
    #[arg(long, value_name = "SERVICE", requires = "iam_secret")]
    iam_service: Option<String>,
    /// IAM check: the region of the signature's scope.
    #[arg(long, value_name = "REGION", requires = "iam_secret")]
    iam_region: Option<String>,
    /// READY replies carry this `max_multiplexed_connections` (scale-up limit).
    #[arg(long, value_name = "N", default_value_t = 5)]
    scale_max: i32,
    /// READY replies carry this `scale_up_bytes_per_sec_threshold`.
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = 300 * 1024 * 1024)]
    scale_threshold: i32,
    /// IAM check: accept only this access key id.
    #[arg(long, value_name = "AKID", requires = "iam_secret")]
    iam_access_key_id: Option<String>,
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
    let Some(mut bind) = BindBehaviour::parse(&args.bind) else {
        bail!("unknown --bind {:?}", args.bind);
    };
    if let BindBehaviour::Reply(response) = &mut bind {
        response.scale_up_config.max_multiplexed_connections = args.scale_max;
        response.scale_up_config.scale_up_bytes_per_sec_threshold = args.scale_threshold;
    }
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
    let iam = match (
        args.iam_secret,
        args.iam_fs_id,
        args.iam_service,
        args.iam_region,
    ) {
        (Some(secret_access_key), Some(fs_id), Some(service), Some(region)) => {
            let service = match service.as_str() {
                "s3files" => "s3files",
                "efs" | "elasticfilesystem" => "elasticfilesystem",
                other => bail!("--iam-service {other:?}: expected s3files or efs"),
            };
            Some(IamVerifier {
                secret_access_key,
                service: service.to_string(),
                region,
                fs_id,
                access_key_id: args.iam_access_key_id,
            })
        }
        _ => None,
    };
    if iam.is_some() && args.plaintext {
        bail!("--iam-secret needs TLS: drop --plaintext");
    }
    let config = MountTargetConfig {
        tls,
        bind,
        backend,
        max_record_size: efs_rpc::DEFAULT_MAX_RECORD_SIZE,
        iam,
    };
    let target = FakeMountTarget::start(args.listen, config).await?;
    println!("listening on {}", target.addr());
    std::io::stdout().flush()?;
    tokio::signal::ctrl_c().await.ok();
    Ok(())
}
