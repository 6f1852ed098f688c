//! Errors of the server leg, each naming the layer that failed and what to check.
//!
//! An operator reading one log line must know whether DNS, TCP, TLS or the AWSFILE bind failed,
//! and what to look at next. Messages never contain credentials.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use efs_rpc::{RecordError, ReplyError};
use thiserror::Error;

/// The layer of the server connection where a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Layer {
    /// Resolving the target's host name.
    Dns,
    /// Opening the TCP connection.
    Tcp,
    /// The TLS handshake (server certificate, client certificate).
    Tls,
    /// The AWSFILE `bind_client_to_partition` exchange.
    Bind,
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layer::Dns => "dns",
            Layer::Tcp => "tcp",
            Layer::Tls => "tls",
            Layer::Bind => "bind",
        })
    }
}

/// Why a connection to the mount target could not be opened.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The resolver failed for the target's host name.
    #[error(
        "dns: cannot resolve {target}: {source}; check the target host name (for S3 Files: \
         {{az_id}}.{{fs_id}}.s3files.{{region}}.on.aws, or the NLB's DNS name) and the resolver"
    )]
    Resolve {
        /// The mount target (or NLB) as `host:port`, as configured.
        target: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// The resolver did not answer in time.
    #[error(
        "dns: resolving {target} took longer than {timeout:?}: check the resolver \
         (/etc/resolv.conf nameservers reachable?) or give --target as an IP address"
    )]
    ResolveTimeout {
        /// The mount target (or NLB) as `host:port`, as configured.
        target: String,
        /// How long the resolver was given.
        timeout: Duration,
    },
    /// The host name resolved, to no address.
    #[error("dns: {target} resolved to no addresses; check the target host name")]
    NoAddresses {
        /// The mount target (or NLB) as `host:port`, as configured.
        target: String,
    },
    /// Every address refused or failed the TCP connection; `attempts` lists each one's error.
    #[error(
        "tcp: connect to {target} failed ({attempts}): check that the mount target or NLB is \
         reachable and that its security group allows TCP 2049 from this host"
    )]
    Tcp {
        /// The mount target (or NLB) as `host:port`, as configured.
        target: String,
        /// Each address tried and its connect error, in one line.
        attempts: String,
    },
    /// No address answered the TCP connection in time.
    #[error(
        "tcp: connect to {target} timed out after {timeout:?}: the address does not answer \
         (firewall, security group or network ACL dropping TCP 2049?)"
    )]
    TcpTimeout {
        /// The mount target (or NLB) as `host:port`, as configured.
        target: String,
        /// The connect timeout that ran out.
        timeout: Duration,
    },
    /// The TLS handshake failed; `source` is the I/O error carrying rustls' error, and the
    /// message quotes it with the server's text escaped.
    #[error(
        "tls: handshake with {server_name} at {addr} failed: {}; {hint}",
        failure_text(.source)
    )]
    Tls {
        /// The name the server certificate was checked against (SNI and verification).
        server_name: String,
        /// The address the TCP connection reached.
        addr: SocketAddr,
        /// The handshake's I/O error, wrapping rustls' error when TLS itself failed.
        #[source]
        source: io::Error,
        /// The operator's next step, chosen from the kind of failure.
        hint: &'static str,
    },
    /// The TLS handshake did not finish in time.
    #[error(
        "tls: handshake with {server_name} at {addr} timed out after {timeout:?}: is the target \
         a TLS endpoint (EFS/S3 Files port 2049 through the NLB)?"
    )]
    TlsTimeout {
        /// The name the server certificate was to be checked against.
        server_name: String,
        /// The address the TCP connection reached.
        addr: SocketAddr,
        /// The handshake time limit that ran out.
        timeout: Duration,
    },
    /// The connection opened, but the AWSFILE bind failed.
    #[error("bind: {0}")]
    Bind(#[from] BindError),
}

impl ConnectError {
    /// The layer that failed.
    pub fn layer(&self) -> Layer {
        match self {
            ConnectError::Resolve { .. }
            | ConnectError::ResolveTimeout { .. }
            | ConnectError::NoAddresses { .. } => Layer::Dns,
            ConnectError::Tcp { .. } | ConnectError::TcpTimeout { .. } => Layer::Tcp,
            ConnectError::Tls { .. } | ConnectError::TlsTimeout { .. } => Layer::Tls,
            ConnectError::Bind(_) => Layer::Bind,
        }
    }
}

/// Why `bind_client_to_partition` did not produce a decoded reply.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BindError {
    /// The server answered with an RPC-level refusal or bytes that are not a bind reply. A
    /// plain NFS server answers PROG_UNAVAIL: the proxy then forwards without bind.
    #[error("the server refused or did not understand bind_client_to_partition: {0}")]
    Rpc(#[from] ReplyError),
    /// The server answered another call than the bind.
    #[error("the reply's xid {got:#010x} does not match the call's {sent:#010x}")]
    XidMismatch {
        /// The xid of the bind call.
        sent: u32,
        /// The xid of the reply received.
        got: u32,
    },
    /// The reply's record marking is broken, or the connection failed mid-record.
    #[error("the reply is not a valid RPC record: {0}")]
    Record(#[from] RecordError),
    /// The server closed the connection instead of answering.
    #[error(
        "the server closed the connection instead of answering; if the target is an EFS or S3 \
         Files mount target, its IAM policy or the client certificate was refused"
    )]
    Closed,
    /// No reply within the bind timeout.
    #[error("no reply within {0:?}; check that the target speaks NFS/AWSFILE on this port")]
    Timeout(Duration),
    /// Reading or writing failed: a TLS alert (`tls`), or a broken connection. The message
    /// quotes `source` with the server's text escaped.
    #[error("{}; {hint}", failure_text(.source))]
    Io {
        /// The read or write error, wrapping rustls' error for a TLS failure.
        #[source]
        source: io::Error,
        /// The operator's next step, chosen from the kind of failure.
        hint: &'static str,
        /// The failure is a TLS error (such as the server's alert refusing our certificate),
        /// not a broken connection.
        tls: bool,
    },
}

impl From<io::Error> for BindError {
    /// In TLS 1.3 the server judges the client certificate after the client's handshake is
    /// done, so a refused certificate surfaces here, as an alert on the first read.
    fn from(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::UnexpectedEof {
            return BindError::Closed;
        }
        let is_tls = err
            .get_ref()
            .is_some_and(|e| e.downcast_ref::<rustls::Error>().is_some());
        let hint = if is_tls {
            next_step(&err)
        } else {
            "the connection failed during bind; check the network path to the target"
        };
        BindError::Io {
            source: err,
            hint,
            tls: is_tls,
        }
    }
}

impl BindError {
    /// True when the server answered, but not with a bind reply: efs-proxy's signal to carry on
    /// without bind on a fresh connection.
    pub fn is_rpc_refusal(&self) -> bool {
        match self {
            BindError::Rpc(_) | BindError::XidMismatch { .. } => true,
            BindError::Record(RecordError::Io(_)) => false,
            BindError::Record(_) => true,
            BindError::Closed | BindError::Timeout(_) | BindError::Io { .. } => false,
        }
    }

    /// True when the connection closed or broke during the exchange (not a TLS error, not a
    /// timeout): efs-proxy then carries on without bind on a fresh connection.
    pub fn is_broken_connection(&self) -> bool {
        match self {
            BindError::Closed | BindError::Record(RecordError::Io(_)) => true,
            BindError::Io { tls, .. } => !tls,
            _ => false,
        }
    }
}

/// The text of an I/O error on the server leg, for one log line: a rustls error's text has
/// its control characters escaped (the names a server certificate presents are the server's
/// text); any other error is its own text.
pub(crate) fn failure_text(err: &io::Error) -> String {
    match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(tls) => crate::files::escape_controls(&tls.to_string()).into_owned(),
        None => err.to_string(),
    }
}

/// [`failure_text`] and [`next_step`] together (for `check`).
#[cfg(feature = "cli")]
pub(crate) fn tls_hint(err: &io::Error) -> (String, &'static str) {
    (failure_text(err), next_step(err))
}

/// Maps a rustls failure (or a connection broken during the handshake) to the operator's
/// next step.
pub(crate) fn next_step(err: &io::Error) -> &'static str {
    use rustls::{AlertDescription, CertificateError, Error as TlsError};
    let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<TlsError>()) else {
        return match err.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
                "the server closed the connection during the handshake: is the target a TLS \
                 endpoint, and does it accept this client certificate?"
            }
            _ => "check the network path to the target",
        };
    };
    match tls {
        TlsError::InvalidCertificate(CertificateError::NotValidForName)
        | TlsError::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "the server certificate does not name the expected server: --server-name must be the \
             mount target's name (e.g. fs-XXXX.s3files.REGION.on.aws), not the NLB's"
        }
        TlsError::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => {
            "the server certificate is signed by an unknown CA: pass the right --ca-file (AWS's \
             efs-utils.crt) or trust the system roots"
        }
        TlsError::InvalidCertificate(CertificateError::Expired)
        | TlsError::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            "the server certificate has expired (or this host's clock is wrong)"
        }
        TlsError::InvalidCertificate(_) => "the server certificate was rejected: check --ca-file",
        TlsError::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::AccessDenied
            | AlertDescription::UnknownCA,
        ) => {
            "the server rejected our client certificate: check --cert/--key, or the IAM \
             credentials, file system id, region and service the certificate was made for"
        }
        TlsError::AlertReceived(_) => "the server aborted the handshake",
        TlsError::InvalidMessage(_) | TlsError::InappropriateMessage { .. } => {
            "the server does not speak TLS on this port (a plain NFS server?)"
        }
        _ => "check the TLS settings (--ca-file, --server-name, --cert, --key)",
    }
}

/// Why the proxy could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    /// The listening socket could not be bound. The cause is left to the error chain (`{:#}`
    /// prints it once, after the hint).
    #[error(
        "cannot listen on {addr} (is another program using this port? choose another with \
         --listen, or `accept` in a drop-in config; port 0 picks a free one)"
    )]
    Listen {
        /// The address the listener was to bind.
        addr: SocketAddr,
        /// The bind error (typically `AddrInUse` or `PermissionDenied`).
        #[source]
        source: io::Error,
    },
    /// The listen address is not loopback and remote clients were not allowed.
    #[error(
        "refusing to listen on {addr}: it is not a loopback address, and every connection to \
         it gets an NFS session signed with this host's IAM identity; listen on 127.0.0.1 or \
         ::1, or pass --allow-remote (ProxyBuilder::allow_remote) if the network in front of it \
         is trusted"
    )]
    RemoteListen {
        /// The non-loopback address asked for.
        addr: SocketAddr,
    },
    /// The TLS settings (CA file, certificate, key, server name) are unusable.
    #[error(transparent)]
    Tls(#[from] crate::upstream::tls::TlsSetupError),
    /// The IAM client certificate could not be made.
    #[error("cannot make the client certificate: {0}")]
    Iam(#[from] crate::iam::IamError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_broken_connection_during_bind_keeps_its_io_error() {
        let err = BindError::from(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
        let source = err.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(
            source.map(io::Error::kind),
            Some(io::ErrorKind::ConnectionReset)
        );
        assert_eq!(
            err.to_string(),
            "reset; the connection failed during bind; check the network path to the target"
        );
        assert!(err.is_broken_connection());
    }

    /// rustls' error stays reachable (through the io::Error) while the message escapes the
    /// server's text in it.
    #[test]
    fn a_tls_alert_during_bind_is_quoted_escaped_and_kept() {
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate);
        let err = BindError::from(io::Error::new(io::ErrorKind::InvalidData, alert));
        let kept = err
            .source()
            .and_then(|s| s.downcast_ref::<io::Error>())
            .and_then(|e| e.get_ref())
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        assert!(
            matches!(kept, Some(rustls::Error::AlertReceived(_))),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("rejected our client certificate"),
            "{err}"
        );
        assert!(!err.is_broken_connection());

        let forged = io::Error::other(rustls::Error::General("x\nERROR forged".into()));
        assert!(!failure_text(&forged).contains('\n'));
    }
}
