//! What a proxy needs to know: where to listen, where to connect, and how to secure it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use crate::upstream::dial::Keepalive;
pub(crate) use crate::upstream::scale::SearchLimits;
use crate::upstream::tls::{ClientIdentity, Trust};

/// The port efs-utils' proxy listens on by default.
pub(crate) const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 20049);

/// Proxy settings. Build one with [`ProxyConfig::new`] and adjust the public fields.
#[derive(Debug, Clone)]
pub(crate) struct ProxyConfig {
    /// Where NFS clients connect. Loopback by default: the server leg carries this host's
    /// identity, so the proxy must not be reachable from the network.
    pub listen: SocketAddr,
    /// `host:port` of the mount target or the NLB in front of it.
    pub target: String,
    /// TLS settings; `None` forwards plaintext (efs-utils' non-TLS EFS mounts).
    pub tls: Option<TlsSettings>,
    /// Limit for each TCP connect attempt and for the TLS handshake.
    pub connect_timeout: Duration,
    /// Limit for the `bind_client_to_partition` exchange.
    pub bind_timeout: Duration,
    /// One limit for DNS, TCP, TLS and bind of a client's server connection together (drop-in
    /// mode: `retry_nfs_mount_command_timeout_sec` − 1 s, as efs-proxy); `None`: only the
    /// per-step limits.
    pub connect_deadline: Option<Duration>,
    /// Largest RPC record accepted in either direction.
    pub max_record_size: usize,
    /// Close a client connection whose calls get no answer for this long (`None`: never).
    pub server_timeout: Option<Duration>,
    /// TCP keepalive and user timeout of server sockets (`None`: kernel defaults).
    pub keepalive: Option<Keepalive>,
    /// Accept `listen` on an address other than loopback (off: such a start is refused).
    pub allow_remote: bool,
    /// Cap on client connections, lowered to fit the open-file limit; see `listen::accept`.
    pub max_connections: usize,
    /// Time a client connection has to send its first complete record.
    pub first_record_timeout: Duration,
    /// Local users whose connections are served (Linux; default: root and the proxy's user).
    pub allowed_uids: crate::listen::peer::UidPolicy,
    /// Scale-up: open more connections when the server's `ScaleUpConfig` allows it.
    pub scale_up: bool,
    /// Bounds of each scale-up search.
    pub scale_search: SearchLimits,
}

/// TLS settings of the server leg.
#[derive(Debug, Clone)]
pub(crate) struct TlsSettings {
    /// Name for SNI and certificate verification: the mount target's, even when `target` is
    /// an NLB.
    pub server_name: String,
    pub trust: Trust,
    /// Check that the certificate names `server_name` (efs-utils' empty `checkHost` turns
    /// this off; the chain is still verified).
    pub verify_hostname: bool,
    /// Send `server_name` as SNI. Drop-in mode without `checkHost` sends none, as efs-proxy.
    pub send_sni: bool,
    /// Client certificate presented to the server (the IAM certificate for EFS/S3 Files).
    pub identity: Option<ClientIdentity>,
}

impl ProxyConfig {
    /// Defaults: listen on 127.0.0.1:20049, 10 s connect and bind limits, 1 MiB + 4 KiB
    /// records, a 60 s server timeout, keepalive on, scale-up on, plaintext until `tls` is set.
    pub(crate) fn new(target: impl Into<String>) -> Self {
        ProxyConfig {
            listen: DEFAULT_LISTEN,
            target: target.into(),
            tls: None,
            connect_timeout: Duration::from_secs(10),
            bind_timeout: Duration::from_secs(10),
            connect_deadline: None,
            max_record_size: efs_rpc::DEFAULT_MAX_RECORD_SIZE,
            server_timeout: Some(Duration::from_secs(60)),
            keepalive: Some(Keepalive::default()),
            allow_remote: false,
            max_connections: crate::listen::accept::DEFAULT_MAX_CONNECTIONS,
            first_record_timeout: crate::listen::accept::DEFAULT_FIRST_RECORD_TIMEOUT,
            allowed_uids: crate::listen::peer::UidPolicy::default(),
            scale_up: true,
            scale_search: SearchLimits::default(),
        }
    }
}
