//! Test-only peers for efs-proxy: a fake mount target (TLS with a required client certificate,
//! `bind_client_to_partition`, then records relayed to a backend), an in-process RPC responder,
//! a throw-away PKI, and helpers to run the real `efs-proxy` binary.

pub mod bed;
pub mod bench;
pub mod client;
pub mod credentials_endpoint;
mod http;
pub mod iam_verify;
pub mod load;
pub mod mount_target;
pub mod pki;
pub mod process;
pub mod responder;
pub mod sts_sso_endpoint;

pub use bed::{ProxyArgs, TestBed};
pub use iam_verify::{IamVerifier, Refusal};
pub use mount_target::{Backend, BindBehaviour, FakeMountTarget, MountTargetConfig, ServerTls};
pub use pki::{PkiFiles, SERVER_NAME, TestPki};
pub use responder::Responder;
