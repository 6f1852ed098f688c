//! # efs_proxy: a TLS + IAM proxy for Amazon EFS and Amazon S3 Files
//!
//! NFS clients connect to the proxy on loopback; the proxy opens a TLS connection to the mount
//! target (or an NLB in front of it), presents the client certificate, binds the connection to
//! a partition with the AWSFILE `bind_client_to_partition` RPC, and forwards RPC records both
//! ways. It is a drop-in for AWS's efs-proxy without direct S3 reads.
//!
//! Layers, each in its own module:
//!
//! * [`proxy`]: the listener, one task per client connection;
//! * [`connect`]: DNS, TCP and TLS to the target;
//! * [`bind`]: the AWSFILE bind exchange;
//! * [`forward`]: record forwarding between the two sides;
//! * [`tls`]: trust anchors and client certificates;
//! * [`iam`]: the IAM client certificate (credentials, SigV4, refresh) and mount target names;
//! * [`config`], [`error`], [`stats`].

pub mod bind;
pub mod config;
pub mod connect;
pub mod dropin;
pub mod error;
pub mod forward;
pub mod iam;
pub mod logfile;
pub mod proxy;
pub mod scale;
pub mod stats;
pub mod tls;
pub mod writer;

pub use config::{ProxyConfig, TlsSettings};
pub use error::{BindError, ConnectError, Layer, StartError};
pub use proxy::Proxy;
pub use stats::StatsSnapshot;
pub use tls::{ClientIdentity, Trust};
