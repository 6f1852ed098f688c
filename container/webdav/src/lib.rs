//! # efs_webdav: the WebDAV face of the efs-proxy container
//!
//! The container mounts an Amazon S3 Files (or EFS) file system over NFSv4.2 through
//! `efs-proxy`, and this server publishes the mount point over WebDAV, because macOS can mount
//! WebDAV from Finder but cannot reach an NFS mount inside a Linux container.
//!
//! * [`server`]: hyper HTTP/1.1 in front of dav-server's handler, with in-memory locks
//!   (Finder mounts read-write only if LOCK works), optional basic authentication ([`auth`]),
//!   the Host/Origin check against web pages ([`guard`]) and bounds on connections and body
//!   stalls ([`limits`]).
//! * [`fs`]: the served file system: the mount through dav-server's `LocalFs` (macOS mode),
//!   kept from following symbolic links out of the root ([`jail`]), full PUTs written to a
//!   temporary file and renamed on success ([`atomic`]), Finder's metadata files held in
//!   memory ([`overlay`], [`junk`]) so they never become S3 objects, and dead properties in
//!   memory ([`props`]).

#![warn(missing_docs)]

pub mod atomic;
pub mod auth;
pub mod fs;
pub mod guard;
pub mod jail;
pub mod junk;
pub mod limits;
pub mod overlay;
pub mod props;
pub mod server;

pub use auth::BasicAuth;
pub use fs::{BucketFs, MemoryLimits};
pub use server::{Server, ServerConfig};
