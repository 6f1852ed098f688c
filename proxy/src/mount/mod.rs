//! The mount helper's library part: options ([`options`]), the mount table watch
//! ([`mountinfo`]) and the per-mount state under `/run/efs-proxy` ([`state`]). The commands
//! themselves (`efs-proxy mount`, `umount`, `mounts`, the supervisor) are in the binary.

pub mod mountinfo;
pub mod options;
pub mod state;
