//! The library's front door: configure a proxy with [`ProxyBuilder`], start it, and hold a
//! [`ProxyHandle`] for its address, live statistics and shutdown.
//!
//! ```no_run
//! # async fn demo() -> Result<(), efs_proxy::StartError> {
//! use efs_proxy::{Auth, IamAuth, ProxyBuilder, Service, Trust};
//!
//! // S3 Files behind an NLB; the proxy makes and refreshes its own IAM certificate from the
//! // standard AWS credential chain.
//! let proxy = ProxyBuilder::new("my-nlb-0123.elb.us-east-1.amazonaws.com:2049")
//!     .server_name("fs-0123456789abcdef0.s3files.us-east-1.on.aws")
//!     .trust(Trust::CaFile("efs-utils.crt".into()))
//!     .auth(Auth::Iam(IamAuth::new("fs-0123456789abcdef0", "us-east-1", Service::S3Files)))
//!     .start()
//!     .await?;
//! println!("mount -t nfs4 -o nfsvers=4.2,port={} 127.0.0.1:/ /mnt", proxy.local_addr().port());
//! proxy.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Logging goes through [`tracing`]: install any subscriber (or none) in the embedding
//! program; events carry the layer (`dns`, `tcp`, `tls`, `bind`) and never a secret.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{ProxyConfig, TlsSettings};
use crate::error::StartError;
use crate::iam::refresh::{self, Rebuild, RefreshPolicy};
use crate::iam::{CertificateSpec, ClientKey, CredentialSource, Issued, Issuer, Service, key};
use crate::listen::Proxy;
use crate::listen::peer::UidPolicy;
use crate::stats::{Stats, StatsSnapshot};
use crate::upstream::dial::host_of;
use crate::upstream::tls::{self, ClientIdentity, TlsConfigHandle, TlsSetupError, Trust};

/// How the proxy proves who it is to the mount target.
// Built once per proxy: boxing the IAM variant would only make the API clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Default)]
pub enum Auth {
    /// No client certificate (a server that does not ask for one, e.g. in tests).
    #[default]
    None,
    /// A certificate and private key from PEM files (efs-utils' files, or `efs-proxy cert`).
    /// Loaded once at start.
    CertificateFiles {
        /// PEM file of the certificate chain, leaf first.
        cert: PathBuf,
        /// PEM file of the leaf's private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// The proxy makes its own certificate with the IAM signature and keeps it fresh.
    Iam(IamAuth),
}

/// The IAM certificate the proxy makes: for which file system, with which key and
/// credentials, and when to renew it.
#[derive(Debug)]
pub struct IamAuth {
    spec: CertificateSpec,
    key: Option<ClientKey>,
    credentials: Credentials,
    refresh: RefreshPolicy,
}

#[derive(Debug)]
enum Credentials {
    /// The standard AWS chain for the file system's region, built at start.
    DefaultChain {
        profile: Option<String>,
    },
    Source(CredentialSource),
    /// A certificate without the SigV4 signature (efs-utils' TLS mounts without `iam`).
    Unsigned,
}

impl IamAuth {
    /// A certificate for `fs_id` in `region`, signed with credentials from the standard AWS
    /// chain (environment, `~/.aws` profiles, SSO, container and web identity credentials,
    /// IMDSv2), with a fresh RSA-3072 key held in memory.
    pub fn new(fs_id: impl Into<String>, region: impl Into<String>, service: Service) -> Self {
        IamAuth {
            spec: CertificateSpec::new(fs_id, region, service),
            key: None,
            credentials: Credentials::DefaultChain { profile: None },
            refresh: RefreshPolicy::default(),
        }
    }

    /// Uses only this profile of the shared AWS config files.
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.credentials = Credentials::DefaultChain {
            profile: Some(profile.into()),
        };
        self
    }

    /// Uses these credential providers instead of the default chain.
    pub fn credentials(mut self, source: CredentialSource) -> Self {
        self.credentials = Credentials::Source(source);
        self
    }

    /// Makes certificates without the IAM signature (no credentials needed).
    pub fn unsigned(mut self) -> Self {
        self.credentials = Credentials::Unsigned;
        self
    }

    /// Signs with this key (e.g. efs-utils' `/etc/amazon/efs/privateKey.pem`, loaded with
    /// [`ClientKey::load`]).
    pub fn key(mut self, key: ClientKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Puts an access point id in the certificate.
    pub fn access_point(mut self, id: impl Into<String>) -> Self {
        self.spec.access_point = Some(id.into());
        self
    }

    /// Replaces the whole certificate description (common name, client info, lifetime).
    pub fn spec(mut self, spec: CertificateSpec) -> Self {
        self.spec = spec;
        self
    }

    /// When to renew the certificate and how to retry.
    pub fn refresh_policy(mut self, policy: RefreshPolicy) -> Self {
        self.refresh = policy;
        self
    }
}

/// Configures and starts a proxy.
#[derive(Debug)]
pub struct ProxyBuilder {
    config: ProxyConfig,
    server_name: Option<String>,
    trust: Trust,
    verify_hostname: bool,
    send_sni: bool,
    plaintext: bool,
    auth: Auth,
    listener: Option<TcpListener>,
    drain: Duration,
}

impl ProxyBuilder {
    /// A proxy to `target` (`host:port` of the mount target or an NLB in front of it),
    /// listening on 127.0.0.1:20049, verifying the server against the system trust store.
    pub fn new(target: impl Into<String>) -> Self {
        ProxyBuilder {
            config: ProxyConfig::new(target),
            server_name: None,
            trust: Trust::SystemRoots,
            verify_hostname: true,
            send_sni: true,
            plaintext: false,
            auth: Auth::None,
            listener: None,
            drain: Duration::from_secs(5),
        }
    }

    /// The name for SNI and certificate verification: the mount target's DNS name, even when
    /// the target is an NLB. Defaults to the target's host.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Where NFS clients connect (port 0 picks a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen = addr;
        self
    }

    /// Allows [`listen`](Self::listen) (or [`listener`](Self::listener)) on an address other
    /// than loopback. Without it such a start fails with [`StartError::RemoteListen`]: every
    /// connection gets an NFS session signed with this host's IAM identity.
    pub fn allow_remote(mut self, allow: bool) -> Self {
        self.config.allow_remote = allow;
        self
    }

    /// Caps client connections (default 512, lowered to fit the open-file limit). At the cap
    /// the connection that has waited longest for its first record is closed to make room;
    /// if none waits, the new connection is closed.
    pub fn max_connections(mut self, cap: usize) -> Self {
        self.config.max_connections = cap;
        self
    }

    /// Time a new client connection has to send its first complete RPC record (default
    /// 10 s); no server connection is opened before it.
    pub fn first_record_timeout(mut self, limit: Duration) -> Self {
        self.config.first_record_timeout = limit;
        self
    }

    /// Which local users' connections are served (Linux; the owner of the client's socket).
    /// Default: root (the kernel NFS client) and the proxy's own user.
    pub fn allowed_uids(mut self, policy: UidPolicy) -> Self {
        self.config.allowed_uids = policy;
        self
    }

    /// Serves on an already-bound listener (its address wins over [`listen`](Self::listen)).
    pub fn listener(mut self, listener: TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Which server certificates to trust.
    pub fn trust(mut self, trust: Trust) -> Self {
        self.trust = trust;
        self
    }

    /// Verifies the chain but accepts any name on the server certificate (efs-utils'
    /// empty `checkHost`).
    pub fn skip_hostname_verification(mut self) -> Self {
        self.verify_hostname = false;
        self
    }

    /// Sends no SNI in the TLS handshake (efs-proxy's behaviour when efs-utils' config has no
    /// `checkHost`). Default: the server name is sent.
    pub fn without_sni(mut self) -> Self {
        self.send_sni = false;
        self
    }

    /// Plain TCP to the target, no TLS (efs-utils' non-TLS EFS mounts).
    pub fn plaintext(mut self) -> Self {
        self.plaintext = true;
        self
    }

    /// How the proxy authenticates (default: no client certificate).
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Limit of each TCP connect attempt and of the TLS handshake (default 10 s).
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.config.connect_timeout = limit;
        self
    }

    /// One limit for DNS, TCP, TLS and the bind of a client's first server connection
    /// together (default: none, each step has its own limit). efs-utils' mount helper waits
    /// this long for a mount, so a slow path must fail before it gives up.
    pub fn connect_deadline(mut self, limit: Duration) -> Self {
        self.config.connect_deadline = Some(limit);
        self
    }

    /// Limit of the `bind_client_to_partition` exchange (default 10 s).
    pub fn bind_timeout(mut self, limit: Duration) -> Self {
        self.config.bind_timeout = limit;
        self
    }

    /// Close a client connection whose calls get no answer this long (default 60 s; `None`:
    /// never).
    pub fn server_timeout(mut self, limit: Option<Duration>) -> Self {
        self.config.server_timeout = limit;
        self
    }

    /// Largest RPC record accepted either way (default 1 MiB + 4 KiB).
    pub fn max_record_size(mut self, bytes: usize) -> Self {
        self.config.max_record_size = bytes;
        self
    }

    /// TCP keepalive of server sockets (default on: 30 s idle, 3 probes 10 s apart, 60 s
    /// `TCP_USER_TIMEOUT`; `None`: the kernel's defaults).
    pub fn keepalive(mut self, keepalive: Option<crate::config::Keepalive>) -> Self {
        self.config.keepalive = keepalive;
        self
    }

    /// Opens more connections per client when the server allows it (default on).
    pub fn scale_up(mut self, enabled: bool) -> Self {
        self.config.scale_up = enabled;
        self
    }

    /// How long [`ProxyHandle::shutdown`] waits for open connections to close (default 5 s).
    pub fn drain_timeout(mut self, limit: Duration) -> Self {
        self.drain = limit;
        self
    }

    /// Makes the client certificate (for IAM: fetches credentials and signs), binds the
    /// listener and starts serving in the current Tokio runtime.
    pub async fn start(self) -> Result<ProxyHandle, StartError> {
        let ProxyBuilder {
            mut config,
            server_name,
            trust,
            verify_hostname,
            send_sni,
            plaintext,
            auth,
            listener,
            drain,
        } = self;
        let (identity, iam) = first_identity(auth).await?;
        let name = server_name.unwrap_or_else(|| host_of(&config.target).to_string());
        let settings = TlsSettings {
            server_name: name,
            trust,
            verify_hostname,
            send_sni,
            identity,
        };
        config.tls = (!plaintext).then(|| settings.clone());
        let proxy = match listener {
            Some(listener) => Proxy::from_listener(listener, config)?,
            None => Proxy::bind(config).await?,
        };
        let addr = proxy.local_addr().map_err(|source| StartError::Listen {
            addr: "0.0.0.0:0".parse().expect("literal address"),
            source,
        })?;
        let stats = proxy.stats();
        let shutdown = CancellationToken::new();

        match (&iam, &settings.identity) {
            (Some(iam), _) => {
                stats.set_certificate_expiry(Some(iam.first.certificate.not_after.system_time()))
            }
            (None, Some(identity)) => stats.set_certificate_expiry(identity.not_after()),
            (None, None) => {}
        }
        if let (Some(iam), Some(handle)) = (iam, proxy.tls_handle()) {
            let trust = settings.trust.clone();
            let rebuild: Rebuild = Arc::new(move |id| {
                let mut config = tls::client_config(&trust, verify_hostname, Some(id))?;
                config.enable_sni = send_sni;
                Ok(config)
            });
            let stats = stats.clone();
            refresh::spawn(
                iam.issuer,
                iam.first,
                iam.policy,
                handle,
                rebuild,
                stats,
                shutdown.clone(),
            );
        }
        let tls = proxy.tls_handle().map(|handle| TlsReload {
            handle,
            verify_hostname,
            send_sni,
        });
        let task = tokio::spawn(proxy.run(shutdown.clone(), drain));
        Ok(ProxyHandle {
            addr,
            stats,
            tls,
            shutdown,
            task,
        })
    }
}

/// The IAM certificate made at start, and what keeps it fresh.
struct IamRefresh {
    issuer: Arc<Issuer>,
    first: Issued,
    policy: RefreshPolicy,
}

/// The client certificate to present from the start: none, the files', or a fresh IAM
/// certificate (fetching credentials and signing now, so a bad setup fails the start).
async fn first_identity(
    auth: Auth,
) -> Result<(Option<ClientIdentity>, Option<IamRefresh>), StartError> {
    match auth {
        Auth::None => Ok((None, None)),
        Auth::CertificateFiles { cert, key } => {
            Ok((Some(ClientIdentity::from_pem_files(&cert, &key)?), None))
        }
        Auth::Iam(auth) => {
            let iam = issue_first(auth).await?;
            Ok((Some(iam.first.identity.clone()), Some(iam)))
        }
    }
}

async fn issue_first(auth: IamAuth) -> Result<IamRefresh, StartError> {
    let key = match auth.key {
        Some(key) => key,
        None => key::generate_rsa_blocking().await.map_err(iam_error)?.0,
    };
    let credentials = match auth.credentials {
        Credentials::DefaultChain { profile } => Some(CredentialSource::new(
            &auth.spec.region,
            profile.as_deref(),
            Duration::from_secs(5),
        )),
        Credentials::Source(source) => Some(source),
        Credentials::Unsigned => None,
    };
    let issuer = Issuer::new(auth.spec, key, credentials);
    let first = issuer.issue().await.map_err(iam_error)?;
    tracing::info!(
        "client certificate for {} ({}, {}): {}",
        issuer.spec().fs_id,
        issuer.spec().service,
        issuer.spec().region,
        refresh::describe(&first)
    );
    Ok(IamRefresh {
        issuer: Arc::new(issuer),
        first,
        policy: auth.refresh,
    })
}

fn iam_error(e: impl Into<crate::iam::IamError>) -> StartError {
    StartError::Iam(e.into())
}

/// A running proxy.
#[derive(Debug)]
pub struct ProxyHandle {
    addr: SocketAddr,
    stats: Arc<Stats>,
    tls: Option<TlsReload>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

/// What a certificate reload needs besides the new files: the live configuration and how the
/// proxy was told to verify.
struct TlsReload {
    handle: TlsConfigHandle,
    verify_hostname: bool,
    send_sni: bool,
}

impl std::fmt::Debug for TlsReload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsReload")
            .field("verify_hostname", &self.verify_hostname)
            .field("send_sni", &self.send_sni)
            .finish_non_exhaustive()
    }
}

impl ProxyHandle {
    /// The address NFS clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Live statistics: connections, bytes, records, binds, reconnects, certificate expiry.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// When the client certificate in use expires (`None` without one).
    pub fn certificate_expiry(&self) -> Option<SystemTime> {
        self.stats.snapshot().certificate_expiry
    }

    /// Loads a new client certificate, key and trust for new server connections (open ones
    /// keep theirs), e.g. on SIGHUP after efs-utils' watchdog renewed the files. On error the
    /// previous ones stay in use. Does nothing for a plaintext proxy.
    pub fn reload_certificate(
        &self,
        cert: &Path,
        key: &Path,
        trust: &Trust,
    ) -> Result<bool, TlsSetupError> {
        let Some(tls) = &self.tls else {
            return Ok(false);
        };
        let identity = ClientIdentity::from_pem_files(cert, key)?;
        let mut config = tls::client_config(trust, tls.verify_hostname, Some(&identity))?;
        config.enable_sni = tls.send_sni;
        tls.handle.replace(config);
        if let Some(expiry) = identity.not_after() {
            self.stats.set_certificate_expiry(Some(expiry));
        }
        Ok(true)
    }

    /// Stops accepting, closes every connection (waiting up to the drain timeout) and stops
    /// the certificate refresh.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}
