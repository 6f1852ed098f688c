//! Drop-in mode: what efs-utils' mount helpers hand to `efs-proxy CONFIG [--tls]`.
//!
//! - [`config`]: the stunnel-flavoured config file efs-utils writes;
//! - [`logfile`]: the size-rotated log file efs-proxy keeps beside it.

pub(crate) mod config;
#[cfg(feature = "cli")]
pub(crate) mod logfile;

pub use config::*;
