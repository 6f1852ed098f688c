//! The upstream layer: everything between the proxy and the mount target, one step per file.
//!
//! - [`dial`]: DNS, TCP and the TLS handshake to the target (an NLB or the mount target);
//! - [`tls`]: trust anchors, the client certificate and the rustls configuration;
//! - [`bind`]: the AWSFILE `bind_client_to_partition` exchange on a fresh connection;
//! - [`scale`]: the search for more connections bound to the same partition.

pub(crate) mod bind;
pub(crate) mod dial;
pub(crate) mod scale;
pub(crate) mod tls;
