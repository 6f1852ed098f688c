//! Subcommands of the `efs-proxy` binary.

pub mod run;
