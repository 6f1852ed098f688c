//! # efs_proxy: a TLS + IAM proxy for Amazon EFS and Amazon S3 Files
//!
//! NFS clients connect to the proxy on loopback; the proxy opens a TLS connection to the mount
//! target (or an NLB in front of it), presents the client certificate, binds the connection to
//! a partition with the AWSFILE `bind_client_to_partition` RPC, and forwards RPC records both
//! ways. It is a drop-in for AWS's efs-proxy without direct S3 reads.
//!
//! ## Embedding
//!
//! [`ProxyBuilder`] configures a proxy and starts it in the current Tokio runtime; the
//! [`ProxyHandle`] it returns gives the local address, live [`StatsSnapshot`]s and a graceful
//! shutdown. Authentication is [`Auth`]: certificate files, or [`IamAuth`] for the IAM
//! certificate the proxy makes and refreshes itself. See `examples/embed.rs`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), efs_proxy::StartError> {
//! let proxy = efs_proxy::ProxyBuilder::new("fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:2049")
//!     .auth(efs_proxy::Auth::Iam(efs_proxy::IamAuth::new(
//!         "fs-0123456789abcdef0",
//!         "us-east-1",
//!         efs_proxy::Service::Efs,
//!     )))
//!     .start()
//!     .await?;
//! println!("{:?}", proxy.stats());
//! proxy.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Layers
//!
//! Each layer is a folder (see `docs/architecture.md`): `listen` accepts NFS clients and runs
//! one session per connection; `upstream` dials the mount target (DNS, TCP, TLS), performs the
//! AWSFILE bind and searches for more connections to the same partition; `forward` moves RPC
//! records between the client and those connections; `io` holds the transport adapters;
//! `iam` makes the client certificate; `dropin` reads efs-utils' config file; `check`
//! diagnoses the way to a mount target. The RPC byte layouts live in the `efs-rpc` crate.
//!
//! The public interface is: the items re-exported here and the [`iam`] module (certificates
//! and mount target names). Everything else is private; the binary, the integration tests and
//! the fuzz targets reach what they need through one hidden `internal` module, which is not
//! part of the stable API.

#![warn(missing_docs)]

mod builder;
#[cfg(feature = "cli")]
mod check;
mod config;
mod dropin;
mod error;
mod files;
mod forward;
pub mod iam;
mod io;
mod listen;
mod mount;
mod stats;
mod upstream;

#[doc(hidden)]
pub mod internal;

pub use builder::{Auth, IamAuth, ProxyBuilder, ProxyHandle};
pub use config::Keepalive;
pub use error::{BindError, ConnectError, Layer, StartError};
pub use iam::refresh::RefreshPolicy;
pub use iam::{CertificateSpec, ClientKey, CredentialSource, Service};
pub use listen::peer::UidPolicy;
pub use stats::StatsSnapshot;
pub use upstream::tls::{TlsSetupError, Trust};
