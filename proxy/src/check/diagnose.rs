//! Why a step failed, from what the peer did: the classifiers return a [`Diagnosis`], and
//! [`Diagnosis::step`] words it. All the wording of these failures is in this file, so two
//! steps that meet the same cause (a TLS alert and a hang-up after the handshake both mean a
//! refused client certificate in TLS 1.3) say it the same way.
//!
//! Three moments are classified: a failed TLS handshake ([`tls_failure`], finished by
//! [`after_probe`] when only a plaintext NFS call can tell what the peer is), a bind answered
//! with ERROR ([`bind_refusal`]: mount targets give their reason in words, matched by the
//! [`REFUSALS`] table) and a hang-up instead of a bind reply ([`bind_hang_up`]).

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::probe::{Probe, snippet};
use super::{Problem, Step, StepName};
use crate::iam::names::MountTargetName;

/// The fix for every TLS-without-IAM failure: have the proxy sign the certificate.
pub(super) const IAM_FIX: &str = "turn IAM on: drop --cert/--no-iam and pass --fs-id ID --region \
    REGION --service s3files|efs with AWS credentials (environment, --profile, or an instance, \
    task or pod role); the proxy then signs the client certificate with SigV4";

const PLAIN_NFS_FIX: &str = "EFS and S3 Files serve NFS only inside TLS with an IAM client \
    certificate, which is what this proxy adds: a direct `mount -t nfs4` of the mount target or \
    NLB is refused with \"access denied\". Point --target at the mount target or the NLB (TCP \
    2049, TLS), and mount through `efs-proxy run` (mount -t nfs4 -o port=20049 127.0.0.1:/ MNT)";

const NO_TLS_FIX: &str = "--target must reach the mount target's TLS port: the NLB's TCP \
    listener on 2049 (a TCP pass-through, not a TLS or HTTP listener) or the mount target itself \
    at port 2049; check the host and port";

/// Which of region and file system id differ between the mount target served and the one
/// expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mismatch {
    region: bool,
    fs_id: bool,
}

/// The mismatch between `served` and `expected`, when there is one (a name without a file
/// system id matches any).
pub(super) fn mismatch(served: &MountTargetName, expected: &MountTargetName) -> Option<Mismatch> {
    let found = Mismatch {
        region: served.region != expected.region,
        fs_id: matches!((&served.fs_id, &expected.fs_id), (Some(a), Some(b)) if a != b),
    };
    (found.region || found.fs_id).then_some(found)
}

/// Where the check's expectation of the mount target came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExpectedFrom {
    FsIdAndRegion,
    ServerName,
}

/// How a peer failed to answer the TLS ClientHello at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Quiet {
    Silent { addr: SocketAddr, limit: Duration },
    HungUp { addr: SocketAddr },
}

impl fmt::Display for Quiet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quiet::Silent { addr, limit } => write!(
                f,
                "{addr} accepted TCP but did not answer the TLS ClientHello within {limit:?}"
            ),
            Quiet::HungUp { addr } => write!(
                f,
                "{addr} closed the connection at the TLS ClientHello without a TLS answer"
            ),
        }
    }
}

/// What the client certificate lacks, as far as a bind refusal tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MissingIam {
    /// It has a signature: the server's words alone say IAM is missing.
    Nothing,
    /// Neither a SigV4 signature nor a file system id: not an IAM certificate.
    SignatureAndFsId,
    /// No SigV4 signature.
    Signature,
}

/// Why a step failed, by the moment it failed at; [`Diagnosis::step`] words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Diagnosis {
    /// The TLS handshake failed.
    Tls(TlsFailure),
    /// The bind was refused, or the server hung up instead of answering it.
    Bind(BindFailure),
}

impl Diagnosis {
    /// The failed step, its detail led by the problem's label when it has one.
    pub(super) fn step(&self, name: StepName, elapsed: Duration) -> Step {
        let (problem, detail, fix) = match self {
            Diagnosis::Tls(f) => (f.problem(), f.detail(), f.fix()),
            Diagnosis::Bind(f) => (f.problem(), f.detail(), f.fix()),
        };
        match problem {
            Some(p) => Step::problem(name, elapsed, p, detail, fix),
            None => Step::fail(name, elapsed, detail, fix),
        }
    }
}

/// Why a TLS handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TlsFailure {
    /// The peer answered the ClientHello with an RPC reply: plaintext NFS.
    RpcReply { addr: SocketAddr },
    /// The peer answered the ClientHello with bytes that are not TLS.
    NotTls { addr: SocketAddr, first: Vec<u8> },
    /// The peer did not answer the ClientHello; the plaintext probe got `probe`.
    Probed { quiet: Quiet, probe: Probe },
    /// The handshake started but did not finish in time.
    Timeout { addr: SocketAddr, limit: Duration },
    /// The certificate names a mount target of another region or file system.
    WrongMountTarget {
        addr: SocketAddr,
        served: MountTargetName,
        served_names: String,
        expected: MountTargetName,
        from: ExpectedFrom,
        server_name: String,
        mismatch: Mismatch,
    },
    /// The certificate does not name the server name (an NLB's name given as server name?).
    NameMismatch {
        server_name: String,
        served_names: String,
        reason: String,
    },
    /// The server refused a client certificate that was not signed here.
    ClientCertRefused { reason: String, presented: bool },
    /// Any other handshake failure, with the connect layer's hint.
    Other {
        addr: SocketAddr,
        reason: String,
        hint: &'static str,
    },
}

impl TlsFailure {
    fn problem(&self) -> Option<Problem> {
        match self {
            TlsFailure::RpcReply { .. }
            | TlsFailure::Probed {
                probe: Probe::Answered | Probe::Refused(_),
                ..
            } => Some(Problem::PlainNfs),
            TlsFailure::NotTls { .. } | TlsFailure::Probed { .. } => Some(Problem::NoTls),
            TlsFailure::WrongMountTarget { .. } => Some(Problem::WrongRegionOrFsId),
            TlsFailure::ClientCertRefused { .. } => Some(Problem::TlsWithoutIam),
            TlsFailure::Timeout { .. }
            | TlsFailure::NameMismatch { .. }
            | TlsFailure::Other { .. } => None,
        }
    }

    fn detail(&self) -> String {
        match self {
            TlsFailure::RpcReply { addr } => format!(
                "{addr} answered the TLS ClientHello with an RPC reply: it speaks NFS/RPC in \
                 plaintext, it is not an EFS/S3 Files mount target's TLS port"
            ),
            TlsFailure::NotTls { addr, first } => format!(
                "{addr} is not a TLS endpoint: it answered the TLS ClientHello with {} ({} bytes, \
                 not a TLS record)",
                snippet(first),
                first.len()
            ),
            TlsFailure::Probed { quiet, probe } => probed_detail(quiet, probe),
            TlsFailure::Timeout { addr, limit } => {
                format!("the TLS handshake with {addr} did not finish within {limit:?}")
            }
            TlsFailure::WrongMountTarget {
                addr,
                served,
                served_names,
                expected,
                from,
                server_name,
                ..
            } => {
                let (from, s) = match from {
                    ExpectedFrom::FsIdAndRegion => ("--fs-id/--region", ""),
                    ExpectedFrom::ServerName => ("--server-name", "s"),
                };
                format!(
                    "the mount target at {addr} serves {served} (its certificate names \
                     {served_names}), but {from} expect{s} {expected} (server name {server_name})"
                )
            }
            TlsFailure::NameMismatch {
                server_name,
                served_names,
                reason,
            } => format!(
                "the server certificate does not name {server_name} (it names {served_names}): \
                 {reason}"
            ),
            TlsFailure::ClientCertRefused { reason, presented } => format!(
                "the mount target refused the client certificate ({reason}); {}",
                if *presented {
                    "it was not signed with IAM credentials here"
                } else {
                    "none was presented"
                }
            ),
            TlsFailure::Other { addr, reason, .. } => {
                format!("handshake with {addr} failed: {reason}")
            }
        }
    }

    fn fix(&self) -> Cow<'static, str> {
        match self {
            TlsFailure::RpcReply { .. }
            | TlsFailure::Probed {
                probe: Probe::Answered | Probe::Refused(_),
                ..
            } => PLAIN_NFS_FIX.into(),
            TlsFailure::NotTls { .. } | TlsFailure::Probed { .. } => NO_TLS_FIX.into(),
            TlsFailure::Timeout { .. } => {
                "check the network path; raise --connect-timeout on a slow link".into()
            }
            TlsFailure::WrongMountTarget { mismatch, .. } => {
                wrong_mount_target_fix(*mismatch).into()
            }
            TlsFailure::NameMismatch { .. } => "--server-name must be the mount target's name \
                 (e.g. fs-0123456789abcdef0.s3files.us-east-1.on.aws), not the NLB's: the NLB goes \
                 in --target only"
                .into(),
            TlsFailure::ClientCertRefused { .. } => IAM_FIX.into(),
            TlsFailure::Other { hint, .. } => (*hint).into(),
        }
    }
}

fn probed_detail(quiet: &Quiet, probe: &Probe) -> String {
    match probe {
        Probe::Answered => format!(
            "{quiet}, but answered a plaintext NFS NULL call: it is an NFS server without TLS, \
             not an EFS/S3 Files mount target or its NLB"
        ),
        Probe::Refused(reason) => format!(
            "{quiet}, and refused a plaintext NFS NULL call ({reason}): \"access denied\" is what \
             NFS without TLS and IAM gets"
        ),
        Probe::Bytes(bytes) => format!(
            "{quiet}; to a plaintext NFS call it answered {} (not RPC)",
            snippet(bytes)
        ),
        Probe::Closed | Probe::Silent | Probe::NoConnection(_) => format!(
            "{quiet}, and does not answer a plaintext NFS call either: it is not a TLS endpoint"
        ),
    }
}

fn wrong_mount_target_fix(m: Mismatch) -> String {
    let (which, must) = match (m.region, m.fs_id) {
        (true, true) => ("--region and --fs-id", "they must be"),
        (true, false) => ("--region", "it must be"),
        _ => ("--fs-id", "it must be"),
    };
    let why = if m.region {
        "; the SigV4 signature is only valid in that region"
    } else {
        " (or --target/--az-id must lead to a mount target of this file system)"
    };
    format!("check {which}: {must} the file system's own{why}")
}

/// Why the bind failed: an ERROR reply (its message is the mount target's words) or a
/// hang-up after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BindFailure {
    /// ERROR: IAM is required.
    WithoutIam {
        missing: MissingIam,
        message: String,
    },
    /// ERROR: the certificate is for another file system.
    WrongFsId {
        signed: String,
        region: Option<String>,
        served: Option<String>,
        message: String,
    },
    /// ERROR: the signature does not verify in this region.
    WrongRegion {
        region: String,
        fs_id: String,
        /// The region the server certificate names, and its names, when it differs.
        served: Option<(String, String)>,
        message: String,
    },
    /// ERROR: signed for the other service.
    WrongService { message: String },
    /// ERROR: a time outside the certificate's or signature's validity.
    OutsideValidity { message: String },
    /// ERROR: the access key is not accepted.
    AccessKey { message: String },
    /// ERROR for any other reason.
    Refused { message: String },
    /// A hang-up, with a certificate without signature.
    HangUpWithoutIam { error: String },
    /// A hang-up from a mount target of another region or file system.
    HangUpWrongTarget {
        expected: MountTargetName,
        served: MountTargetName,
        error: String,
    },
    /// A hang-up for no reason the check can see.
    HangUp { error: String },
}

impl BindFailure {
    fn problem(&self) -> Option<Problem> {
        match self {
            BindFailure::WithoutIam { .. } | BindFailure::HangUpWithoutIam { .. } => {
                Some(Problem::TlsWithoutIam)
            }
            BindFailure::WrongFsId { .. }
            | BindFailure::WrongRegion { .. }
            | BindFailure::HangUpWrongTarget { .. } => Some(Problem::WrongRegionOrFsId),
            BindFailure::WrongService { .. }
            | BindFailure::OutsideValidity { .. }
            | BindFailure::AccessKey { .. }
            | BindFailure::Refused { .. }
            | BindFailure::HangUp { .. } => None,
        }
    }

    fn detail(&self) -> String {
        let said = |message: &str| format!("the mount target said {message:?}");
        match self {
            BindFailure::WithoutIam { missing, message } => format!(
                "the mount target requires IAM and refused the client certificate{}: {}",
                missing.why(),
                said(message)
            ),
            BindFailure::WrongFsId {
                signed,
                region,
                served,
                message,
            } => format!(
                "the certificate was signed for fs id {signed}{}, but the mount target serves \
                 {}: {}",
                region
                    .as_deref()
                    .map(|r| format!(" (region {r})"))
                    .unwrap_or_default(),
                served.as_deref().unwrap_or("another file system"),
                said(message)
            ),
            BindFailure::WrongRegion {
                region,
                fs_id,
                served,
                message,
            } => format!(
                "the certificate was signed for region {region} (fs id {fs_id}), but the mount \
                 target {}: {}",
                match served {
                    Some((region, names)) =>
                        format!("serves region {region} (its certificate names {names})"),
                    None => "could not verify the signature, which is scoped to the region".into(),
                },
                said(message)
            ),
            BindFailure::WrongService { message } => format!(
                "the certificate is signed for the wrong service: {}",
                said(message)
            ),
            BindFailure::OutsideValidity { message } => format!(
                "the certificate or its signature is outside its validity: {}",
                said(message)
            ),
            BindFailure::AccessKey { message } => {
                format!("the access key is not accepted: {}", said(message))
            }
            BindFailure::Refused { message } => {
                format!("the mount target refused the bind: {}", said(message))
            }
            BindFailure::HangUpWithoutIam { error } => format!(
                "the mount target hung up after the TLS handshake instead of answering bind; the \
                 client certificate has no SigV4 signature, which a file system requiring IAM \
                 refuses ({error})"
            ),
            BindFailure::HangUpWrongTarget {
                expected,
                served,
                error,
            } => format!(
                "the certificate was signed for {expected}, but the mount target serves \
                 {served}; it hung up instead of answering bind ({error})"
            ),
            BindFailure::HangUp { error } => format!(
                "the mount target hung up after the TLS handshake instead of answering bind: it \
                 refused the IAM client certificate ({error})"
            ),
        }
    }

    fn fix(&self) -> Cow<'static, str> {
        match self {
            BindFailure::WithoutIam { .. } | BindFailure::HangUpWithoutIam { .. } => IAM_FIX.into(),
            BindFailure::WrongFsId { signed, served, .. } => format!(
                "check --fs-id: it must be the file system of this mount target{}; or point \
                 --target/--az-id at a mount target of {signed}",
                served
                    .as_deref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            )
            .into(),
            BindFailure::WrongRegion { .. } => "check --region: it must be the file system's own \
                 region; if it is, the secret access key or session token does not belong to the \
                 access key in the certificate"
                .into(),
            BindFailure::WrongService { .. } => {
                "check --service: s3files for S3 Files file systems, efs for EFS".into()
            }
            BindFailure::OutsideValidity { .. } => {
                "check this host's clock (NTP) and make a new certificate".into()
            }
            BindFailure::AccessKey { .. } => {
                "check the credentials (see the credentials step) and \
                 that they belong to an active IAM identity"
                    .into()
            }
            BindFailure::Refused { .. } => "check the file system policy (it must allow this \
                 identity s3files:ClientMount or elasticfilesystem:ClientMount) and the mount \
                 target's state"
                .into(),
            BindFailure::HangUpWrongTarget { .. } => {
                "check --region and --fs-id: they must be the file system's own".into()
            }
            BindFailure::HangUp { .. } => "check that the file system policy allows this \
                 identity (s3files:ClientMount or elasticfilesystem:ClientMount), that --fs-id \
                 and --region are the file system's, and that the credentials are valid"
                .into(),
        }
    }
}

impl MissingIam {
    /// Why the certificate is not an IAM certificate, for the detail.
    fn why(self) -> &'static str {
        match self {
            MissingIam::Nothing => "",
            MissingIam::SignatureAndFsId => {
                " (the certificate has neither a SigV4 signature nor a file system id: not an \
                 IAM certificate)"
            }
            MissingIam::Signature => {
                " (the certificate has no SigV4 signature, extension 1.3.6.1.4.1.4843.7.2)"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fix_names_what_differs() {
        let fix = |region, fs_id| wrong_mount_target_fix(Mismatch { region, fs_id });
        assert!(fix(true, true).starts_with("check --region and --fs-id: they must be"));
        assert!(fix(true, false).ends_with("only valid in that region"));
        assert!(fix(false, true).starts_with("check --fs-id: it must be"));
    }
}
