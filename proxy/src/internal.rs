//! The hidden door: what the `efs-proxy` binary, the integration tests and the fuzz targets
//! need beyond the public API, in one place (as rustls does). Not stable: anything here may
//! change in any release.

/// `efs-proxy check`: the plan, the steps and the certificate decoders.
#[cfg(feature = "cli")]
pub mod check {
    pub use crate::check::*;
}

/// Drop-in mode: efs-utils' config file, the rotated log file and the pid file.
pub mod dropin {
    #[cfg(feature = "cli")]
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

/// The listener's default connection cap (for the CLI's help text).
pub mod listen {
    pub use crate::listen::accept::DEFAULT_MAX_CONNECTIONS;
}

/// TLS settings, for `check`, the fuzz targets and the test mount target.
pub mod upstream {
    pub use crate::upstream::tls::{
        ClientIdentity, FIPS, HandshakeSignatures, TrustAnchors, client_config, load_certificates,
        server_name,
    };
}

/// The mount helper: options, the mount table watch, the state under /run/efs-proxy.
pub mod mount {
    pub use crate::mount::{mountinfo, options, state};
}
