//! The hidden door: what the `efs-proxy` binary, the integration tests and the fuzz targets
//! need beyond the public API, in one place (as rustls does). Not stable: anything here may
//! change in any release.

/// `efs-proxy check`: the plan, the steps and the certificate decoders.
pub mod check {
    pub use crate::check::*;
}

/// Drop-in mode: efs-utils' config file, the rotated log file and the pid file.
pub mod dropin {
    pub use crate::dropin::logfile::RotatingFile;
    pub use crate::dropin::{DropInConfig, LogDestination, load, parse, parse_bool};
    pub use crate::files::write_pid_file;
}

/// Record forwarding between one client and a group of server connections.
pub mod forward {
    pub use crate::forward::{
        ForwardEnd, Leg, LegEvent, LegSource, ScalePolicy, Session, SessionLimits, forward,
        worst_case_memory,
    };
    pub use crate::stats::Stats;
}

/// The listener: the proxy itself, its connection cap and the peer uid policy.
pub mod listen {
    pub use crate::config::{ProxyConfig, TlsSettings};
    pub use crate::listen::Proxy;
    pub use crate::listen::accept::DEFAULT_MAX_CONNECTIONS;
    pub use crate::listen::peer::UidPolicy;
}

/// The way to the mount target: the host part of a target, TLS settings.
pub mod upstream {
    pub use crate::upstream::dial::host_of;
    pub use crate::upstream::tls::{
        ClientIdentity, FIPS, HandshakeSignatures, TlsConfigHandle, TrustAnchors, client_config,
        load_certificates, server_name,
    };
}
