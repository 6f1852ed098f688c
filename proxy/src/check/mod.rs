//! `efs-proxy check`: the way to a mount target, diagnosed one layer at a time.
//!
//! Each step prints one line: ✓ or ✗ (— when skipped), its duration, what it saw, and on failure
//! the fix. The steps, in order: configuration, credentials (both in `cli/check.rs`), then here
//! DNS (every address), TCP (each address), TLS (protocol, cipher, the server certificate and
//! its name), the client certificate (its extensions decoded), `bind_client_to_partition`
//! (reply, partition, scale-up configuration) and, when asked, an NFS NULL call.
//!
//! The failures users meet most (the original project's "what didn't work") each get their own
//! [`Problem`] and message: a plain NFS server where TLS was expected, a peer that is not TLS at
//! all, TLS without IAM, an unreachable target, and a certificate signed for the wrong region
//! or file system. The classification only uses what the peer did; secrets never appear.
//!
//! The files: this one holds the [`Plan`] and [`run`]s the steps in order; [`report`] the lines
//! and their text and JSON forms; one file per network step (`dns`, `tcp`, `tls`,
//! `client_cert`, `bind`, `nfs_null`); `diagnose` turns what a failed step saw into a
//! [`Diagnosis`](diagnose::Diagnosis) and holds all the wording of those failures; `probe`
//! watches what the peer sends and asks a silent peer whether it speaks plaintext NFS.

mod bind;
mod client_cert;
mod diagnose;
mod dns;
mod nfs_null;
mod probe;
mod report;
mod tcp;
mod tls;

use std::time::Duration;

use crate::iam::Service;
use crate::iam::certificate::Decoded;
use crate::iam::names::{MountTargetName, parse_mount_target_name};
use crate::upstream::tls::{ClientIdentity, TrustAnchors};

pub use probe::{Probe, plaintext_probe};
pub use report::{Problem, Report, Status, Step, StepName, format_elapsed, human};
pub use tls::{ServerCertInfo, decode_server_certificate, describe_trust};

/// Mount targets refuse a SigV4 signature older than this (`X-Amz-Expires`).
pub const MAX_SIGNATURE_AGE: Duration = Duration::from_secs(86_400);

/// What the certificate was made for, when `--fs-id` was given.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The file system id the certificate's SigV4 credential scope names (`--fs-id`).
    pub fs_id: String,
    /// The AWS region of the signature (`--region`).
    pub region: String,
    /// EFS or S3 Files: the service name in the signature and the mount target's domain.
    pub service: Service,
    /// The certificate was signed here with AWS credentials (not `--cert`, not `--no-iam`).
    pub signed: bool,
}

/// Everything the network steps need.
pub struct Plan {
    /// Where to connect: the mount target or NLB, as `host:port`.
    pub target: String,
    /// The name the server certificate must carry (SNI and verification); the mount
    /// target's name even when `target` is an NLB.
    pub server_name: String,
    /// What the server certificate is verified against (nothing with `--no-verify`).
    pub anchors: TrustAnchors,
    /// The client certificate and key presented in the handshake (`None`: TLS without one).
    pub identity: Option<ClientIdentity>,
    /// What the client certificate was made for, to tell a wrong region or file system
    /// apart from other refusals; `None` without `--fs-id`.
    pub expected: Option<Expected>,
    /// Limit for DNS, for the TCP connect of one address, and for the TLS handshake.
    pub connect_timeout: Duration,
    /// Limit for the answer to `bind_client_to_partition` (and to the NFS NULL call).
    pub bind_timeout: Duration,
    /// Send an NFS NULL call after the bind (`--nfs-null`).
    pub nfs_null: bool,
}

impl Plan {
    /// What this check expects to reach: from `--fs-id`, else from the server name.
    fn expected_target(&self) -> Option<MountTargetName> {
        match &self.expected {
            Some(e) => Some(MountTargetName {
                fs_id: Some(e.fs_id.clone()),
                service: e.service,
                region: e.region.clone(),
            }),
            None => parse_mount_target_name(&self.server_name),
        }
    }

    /// True when the certificate is signed here with AWS credentials.
    fn signs(&self) -> bool {
        self.expected.as_ref().is_some_and(|e| e.signed)
    }
}

/// What the TLS step learned, for the later steps' diagnoses.
#[derive(Debug, Default)]
struct Seen {
    server: Option<ServerCertInfo>,
    /// The mount target its certificate names, when it names one.
    served: Option<MountTargetName>,
    client: Option<Decoded>,
}

impl Seen {
    fn has_sigv4(&self) -> bool {
        self.client.as_ref().is_some_and(|c| c.sigv4.is_some())
    }

    /// The server certificate's names, comma-separated (empty without a certificate).
    fn served_names(&self) -> String {
        self.server
            .as_ref()
            .map(|s| s.names.join(", "))
            .unwrap_or_default()
    }
}

/// Runs DNS, TCP, TLS, client certificate, bind and (when asked) NFS NULL, stopping at the
/// first step that leaves nothing to go on.
pub async fn run(plan: &Plan, report: &mut Report) {
    let Some(addrs) = dns::step(plan, report).await else {
        return;
    };
    let Some((tcp, addr)) = tcp::step(plan, addrs, report).await else {
        return;
    };
    let mut seen = Seen::default();
    let Some(mut tls) = tls::step(plan, tcp, addr, &mut seen, report).await else {
        return;
    };
    if !client_cert::step(plan, &mut seen, report) {
        return;
    }
    let Some(leftover) = bind::step(plan, &mut tls, &seen, report).await else {
        return;
    };
    if plan.nfs_null {
        nfs_null::step(plan, &mut tls, leftover, report).await;
    } else {
        report.push(Step::skip(
            StepName::NfsNull,
            "not requested (--nfs-null sends an NFS NULL call after the bind)",
        ));
    }
}

/// A plan and what a TLS step saw, for the classifiers' tests.
#[cfg(test)]
mod test_support {
    use super::*;
    use crate::iam::certificate::DecodedSigV4;

    /// A plan without a client certificate; `expected`: file system, region, signed here.
    pub(super) fn plan(expected: Option<(&str, &str, bool)>) -> Plan {
        Plan {
            target: "192.0.2.1:2049".into(),
            server_name: "fs-0123456789abcdef0.s3files.us-east-1.on.aws".into(),
            anchors: TrustAnchors::load(&crate::Trust::NoVerify).unwrap(),
            identity: None,
            expected: expected.map(|(fs_id, region, signed)| Expected {
                fs_id: fs_id.into(),
                region: region.into(),
                service: Service::S3Files,
                signed,
            }),
            connect_timeout: Duration::from_secs(3),
            bind_timeout: Duration::from_secs(3),
            nfs_null: false,
        }
    }

    /// A client certificate with or without a signature and a file system id, and a server
    /// certificate naming `served`.
    pub(super) fn seen(sigv4: bool, fs_id: Option<&str>, served: Option<&str>) -> Seen {
        let server = served.map(|name| ServerCertInfo {
            names: vec![name.to_string()],
            ..ServerCertInfo::default()
        });
        Seen {
            served: served.and_then(parse_mount_target_name),
            server,
            client: Some(Decoded {
                fs_id: fs_id.map(str::to_string),
                sigv4: sigv4.then(|| DecodedSigV4 {
                    access_key_id: "AKIDEXAMPLE".into(),
                    signed_at: None,
                    session_token: false,
                }),
                ..Decoded::default()
            }),
        }
    }
}
