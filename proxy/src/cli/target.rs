//! The options that say where the mount target is and how to trust it and prove who we are:
//! the same for `run` and `check`, so both take exactly the same command line.

use std::path::PathBuf;

use clap::Args;
use efs_proxy::Trust;

#[derive(Args, Debug)]
pub(crate) struct TargetArgs {
    /// Address dialled for every server connection: the mount target or the NLB, HOST:PORT
    /// [default with --fs-id: the mount target's DNS name, port 2049].
    #[arg(long, value_name = "HOST:PORT", required_unless_present = "fs_id")]
    pub target: Option<String>,
    /// Name for SNI and certificate verification: the mount target's DNS name (e.g.
    /// fs-0123456789abcdef0.s3files.us-east-1.on.aws), even when --target is an NLB
    /// [default with --fs-id: derived as efs-utils does].
    #[arg(long, value_name = "NAME", required_unless_present = "fs_id")]
    pub server_name: Option<String>,
    /// PEM file of trusted CA certificates; without it, the system trust store is used.
    #[arg(long, value_name = "PEM", conflicts_with = "no_verify")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) presented to the server.
    #[arg(long, value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of the client certificate. With --fs-id and no --cert: the key of
    /// the certificate the proxy makes (created, RSA-3072, mode 0600, if the file does not
    /// exist; e.g. efs-utils' /etc/amazon/efs/privateKey.pem) [default: a new key in memory].
    #[arg(long, value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// Do not verify the server certificate at all (testing only).
    #[arg(long)]
    pub no_verify: bool,
    /// Seconds allowed for each TCP connect attempt and for the TLS handshake.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub connect_timeout: u64,
    /// Seconds allowed for the bind_client_to_partition exchange (and check's NFS NULL call).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub bind_timeout: u64,
}

impl TargetArgs {
    /// Which server certificates to trust.
    pub(crate) fn trust(&self) -> Trust {
        match (self.no_verify, &self.ca_file) {
            (true, _) => Trust::NoVerify,
            (false, Some(path)) => Trust::CaFile(path.clone()),
            (false, None) => Trust::SystemRoots,
        }
    }
}
