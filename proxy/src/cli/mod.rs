//! Subcommands of the `efs-proxy` binary.

pub mod cert;
pub mod check;
pub mod iam;
pub mod legacy;
pub mod run;
