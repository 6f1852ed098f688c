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
//! The proxy is built as layers, each in its own module: the listener (`proxy`), the connect
//! layer (`connect`: DNS, TCP, TLS), the AWSFILE bind (`bind`), record forwarding and
//! connection groups (`forward`, `scale`), TLS settings (`tls`). Those modules are public for
//! the binary, the fuzz targets and tests, but hidden from the documentation and not part of
//! the stable API: only the items re-exported at the crate root, [`iam`] (certificates and
//! mount target names) and [`dropin`] (efs-utils' config file) are.

#[doc(hidden)]
pub mod accept;
#[doc(hidden)]
pub mod bind;
mod builder;
#[doc(hidden)]
pub mod check;
#[doc(hidden)]
pub mod config;
#[doc(hidden)]
pub mod connect;
pub mod dropin;
mod error;
#[doc(hidden)]
pub mod files;
#[doc(hidden)]
pub mod forward;
pub mod iam;
#[doc(hidden)]
pub mod logfile;
#[doc(hidden)]
pub mod peer;
#[doc(hidden)]
pub mod proxy;
#[doc(hidden)]
pub mod readahead;
#[doc(hidden)]
pub mod scale;
#[doc(hidden)]
pub mod stats;
#[doc(hidden)]
pub mod tls;
#[doc(hidden)]
pub mod writer;

pub use builder::{Auth, IamAuth, ProxyBuilder, ProxyHandle};
pub use config::Keepalive;
pub use error::{BindError, ConnectError, Layer, StartError};
pub use iam::refresh::RefreshPolicy;
pub use iam::{CertificateSpec, ClientKey, CredentialSource, Service};
pub use stats::StatsSnapshot;
pub use tls::{TlsSetupError, Trust};
