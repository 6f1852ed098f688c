//! Subcommands of the `efs-proxy` binary.

pub mod legacy;
pub mod run;
