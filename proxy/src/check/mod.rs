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

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use efs_rpc::awsfile::{BindResponse, ScaleUpConfig};
use efs_rpc::{CallHeader, MessageBody, Record, RecordCodec, ReplyError, RpcMessage};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Decoder;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::error::{BindError, tls_hint};
use crate::files::escape_controls;
use crate::iam::der::{self, tag};
use crate::iam::{Service, SigningTime, names};
use crate::upstream::bind::{ProxyIdentity, bind_client_to_partition};
use crate::upstream::tls::{self, ClientIdentity, HandshakeSignatures, TlsSetupError, Trust};

/// The NFS program and version of the NULL call.
pub const NFS_PROGRAM: u32 = 100_003;
pub const NFS_VERSION: u32 = 4;
/// Every step, in order.
pub const STEPS: [&str; 8] = [
    "config",
    "credentials",
    "dns",
    "tcp",
    "tls",
    "client-cert",
    "bind",
    "nfs-null",
];
/// Mount targets refuse a SigV4 signature older than this (`X-Amz-Expires`).
pub const MAX_SIGNATURE_AGE: Duration = Duration::from_secs(86_400);
/// Bytes of the peer's first answer kept for the diagnosis.
const FIRST_BYTES: usize = 256;
/// Longest wait for an answer to the plaintext NFS probe.
const PROBE_LIMIT: Duration = Duration::from_secs(3);

/// What a step came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

impl Status {
    pub fn mark(self) -> &'static str {
        match self {
            Status::Pass => "✓",
            Status::Fail => "✗",
            Status::Skip => "—",
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

/// The failures users meet most, each with its own message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The target speaks NFS in plaintext: not EFS/S3 Files' TLS port (a direct
    /// `mount -t nfs4` of the real thing gets "access denied").
    PlainNfs,
    /// The peer is not a TLS endpoint at all.
    NoTls,
    /// TLS works, but the client certificate carries no IAM (SigV4) signature.
    TlsWithoutIam,
    /// DNS, TCP refused or TCP timeout: the NLB or mount target cannot be reached.
    Unreachable,
    /// The certificate was made for another region or file system than the target serves.
    WrongRegionOrFsId,
}

impl Problem {
    /// Stable id for `--json`.
    pub fn id(self) -> &'static str {
        match self {
            Problem::PlainNfs => "plain-nfs",
            Problem::NoTls => "no-tls",
            Problem::TlsWithoutIam => "tls-without-iam",
            Problem::Unreachable => "unreachable",
            Problem::WrongRegionOrFsId => "wrong-region-or-fs-id",
        }
    }

    /// The words each message starts with.
    pub fn label(self) -> &'static str {
        match self {
            Problem::PlainNfs => "plain NFS without TLS",
            Problem::NoTls => "no TLS",
            Problem::TlsWithoutIam => "TLS without IAM",
            Problem::Unreachable => "unreachable",
            Problem::WrongRegionOrFsId => "wrong region or file system id",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: &'static str,
    pub status: Status,
    pub elapsed: Option<Duration>,
    pub detail: String,
    pub fix: Option<String>,
    pub problem: Option<Problem>,
    /// Structured facts for `--json` (addresses, protocol, partition, ...).
    pub data: Value,
}

impl Step {
    pub fn pass(name: &'static str, elapsed: Duration, detail: impl Into<String>) -> Step {
        Step {
            name,
            status: Status::Pass,
            elapsed: Some(elapsed),
            detail: detail.into(),
            fix: None,
            problem: None,
            data: Value::Null,
        }
    }

    pub fn fail(
        name: &'static str,
        elapsed: Duration,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Step {
        Step {
            name,
            status: Status::Fail,
            elapsed: Some(elapsed),
            detail: detail.into(),
            fix: Some(fix.into()),
            problem: None,
            data: Value::Null,
        }
    }

    /// A failure of a known kind: the detail starts with the problem's label.
    pub fn problem(
        name: &'static str,
        elapsed: Duration,
        problem: Problem,
        detail: impl std::fmt::Display,
        fix: impl Into<String>,
    ) -> Step {
        let mut step = Step::fail(name, elapsed, format!("{}: {detail}", problem.label()), fix);
        step.problem = Some(problem);
        step
    }

    pub fn skip(name: &'static str, reason: impl Into<String>) -> Step {
        Step {
            name,
            status: Status::Skip,
            elapsed: None,
            detail: reason.into(),
            fix: None,
            problem: None,
            data: Value::Null,
        }
    }

    pub fn with_data(mut self, data: Value) -> Step {
        self.data = data;
        self
    }

    /// The text line: mark, name, duration, detail, fix.
    pub fn line(&self) -> String {
        let time = self.elapsed.map(format_elapsed).unwrap_or_default();
        let mut line = format!(
            "{} {:<11} {:>9}  {}",
            self.status.mark(),
            self.name,
            time,
            self.detail
        );
        if let Some(fix) = &self.fix {
            line.push_str(". Fix: ");
            line.push_str(fix);
        }
        line
    }

    pub fn to_json(&self) -> Value {
        json!({
            "step": self.name,
            "status": self.status.id(),
            "ms": self.elapsed.map(|d| (d.as_secs_f64() * 100_000.0).round() / 100.0),
            "detail": self.detail,
            "fix": self.fix,
            "problem": self.problem.map(Problem::id),
            "data": self.data,
        })
    }
}

/// `0.12 ms`, `12.3 ms`, `1.20 s`.
pub fn format_elapsed(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// `1 certificate`, `2 certificates`.
fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// A duration for people: `42 s`, `17 min`, `5 h 59 min`, `3 days`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..172_800 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} days", s / 86_400),
    }
}

/// The steps so far; printed as they come when `live`.
#[derive(Debug, Default)]
pub struct Report {
    pub steps: Vec<Step>,
    pub target: Option<String>,
    pub server_name: Option<String>,
    /// Print each step's line on stdout when it is pushed.
    pub live: bool,
}

impl Report {
    pub fn new(live: bool) -> Report {
        Report {
            live,
            ..Default::default()
        }
    }

    pub fn push(&mut self, step: Step) {
        if self.live {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", step.line());
            let _ = out.flush();
        }
        self.steps.push(step);
    }

    /// True when no step failed.
    pub fn ok(&self) -> bool {
        !self.steps.iter().any(|s| s.status == Status::Fail)
    }

    /// The first failure of a known kind, else the first failure.
    pub fn problem(&self) -> Option<Problem> {
        self.steps.iter().find_map(|s| s.problem)
    }

    /// Adds every step not reached as skipped, naming the failure that stopped the run.
    pub fn skip_rest(&mut self) {
        let reason = match self.steps.iter().rev().find(|s| s.status == Status::Fail) {
            Some(failed) => format!("skipped: {} failed", failed.name),
            None => "skipped".to_string(),
        };
        for name in STEPS {
            if !self.steps.iter().any(|s| s.name == name) {
                self.push(Step::skip(name, reason.clone()));
            }
        }
    }

    fn counts(&self) -> (usize, usize, usize) {
        let n = |status| self.steps.iter().filter(|s| s.status == status).count();
        (n(Status::Pass), n(Status::Fail), n(Status::Skip))
    }

    /// The last line of the text report.
    pub fn summary(&self) -> String {
        let (passed, failed, skipped) = self.counts();
        if self.ok() {
            return format!("all checks passed ({passed} passed, {skipped} skipped)");
        }
        let what = match self.problem() {
            Some(p) => p.label().to_string(),
            None => {
                let names: Vec<&str> = self
                    .steps
                    .iter()
                    .filter(|s| s.status == Status::Fail)
                    .map(|s| s.name)
                    .collect();
                format!("{} failed", names.join(", "))
            }
        };
        format!("check failed: {what} ({passed} passed, {failed} failed, {skipped} skipped)")
    }

    /// The whole text report.
    pub fn render_text(&self) -> String {
        let mut text = String::new();
        for step in &self.steps {
            text.push_str(&step.line());
            text.push('\n');
        }
        text.push_str(&self.summary());
        text.push('\n');
        text
    }

    pub fn to_json(&self) -> Value {
        json!({
            "ok": self.ok(),
            "target": self.target,
            "server_name": self.server_name,
            "problem": self.problem().map(Problem::id),
            "summary": self.summary(),
            "steps": self.steps.iter().map(Step::to_json).collect::<Vec<_>>(),
        })
    }
}

/// What the certificate was made for, when `--fs-id` was given.
#[derive(Debug, Clone)]
pub struct Expected {
    pub fs_id: String,
    pub region: String,
    pub service: Service,
    /// The certificate was signed here with AWS credentials (not `--cert`, not `--no-iam`).
    pub signed: bool,
}

/// Everything the network steps need.
pub struct Plan {
    pub target: String,
    pub server_name: String,
    /// `None`: `--no-verify`.
    pub roots: Option<Arc<RootCertStore>>,
    pub identity: Option<ClientIdentity>,
    pub expected: Option<Expected>,
    pub connect_timeout: Duration,
    pub bind_timeout: Duration,
    pub nfs_null: bool,
}

/// The trust anchors of `trust`, and a description of them.
pub fn load_roots(trust: &Trust) -> Result<(Option<Arc<RootCertStore>>, String), TlsSetupError> {
    let mut roots = RootCertStore::empty();
    let description = match trust {
        Trust::NoVerify => {
            return Ok((
                None,
                "none (--no-verify: the server certificate is not checked)".to_string(),
            ));
        }
        Trust::CaFile(path) | Trust::CaFileAndSystemRoots(path) => {
            for cert in tls::load_certificates(path)? {
                roots.add(cert).map_err(|e| TlsSetupError::BadCa {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            }
            format!(
                "CA file {} ({})",
                path.display(),
                plural(roots.len(), "certificate")
            )
        }
        Trust::SystemRoots => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if roots.is_empty() {
                return Err(TlsSetupError::NoSystemRoots);
            }
            format!(
                "system trust store ({})",
                plural(roots.len(), "certificate")
            )
        }
    };
    Ok((Some(Arc::new(roots)), description))
}

/// A mount target name taken apart: `[az.]fs-….(efs|s3files).REGION.SUFFIX`, or a wildcard
/// such as `*.efs.us-east-1.amazonaws.com` (no file system id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountTargetName {
    pub fs_id: Option<String>,
    pub service: Service,
    pub region: String,
}

impl std::fmt::Display for MountTargetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.fs_id {
            Some(fs) => write!(f, "{fs} ({}, {})", self.service.dns_label(), self.region),
            None => write!(f, "{} in {}", self.service.dns_label(), self.region),
        }
    }
}

/// Parses a mount target's DNS name or server name; `None` for other names.
pub fn parse_mount_target_name(name: &str) -> Option<MountTargetName> {
    let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
    // The service label needs a region after it and a suffix after that.
    for i in 0..labels.len().saturating_sub(2) {
        let service = match labels[i] {
            "efs" => Service::Efs,
            "s3files" => Service::S3Files,
            _ => continue,
        };
        let region = labels[i + 1];
        if names::check_region(region).is_err() {
            continue;
        }
        let fs_id = i
            .checked_sub(1)
            .map(|j| labels[j])
            .filter(|l| names::check_fs_id(l).is_ok())
            .map(str::to_string);
        return Some(MountTargetName {
            fs_id,
            service,
            region: region.to_string(),
        });
    }
    None
}

/// What the client certificate says.
#[derive(Debug, Clone, Default)]
pub struct ClientCertInfo {
    pub subject: String,
    pub not_before: Option<SigningTime>,
    pub not_after: Option<SigningTime>,
    /// Extension 1.3.6.1.4.1.4843.7.3.
    pub fs_id: Option<String>,
    /// Extension 1.3.6.1.4.1.4843.7.1.
    pub access_point: Option<String>,
    /// Extension 1.3.6.1.4.1.4843.7.2.
    pub sigv4: Option<SigV4Info>,
    /// Extension 1.3.6.1.4.1.4843.7.4: source and version.
    pub client_info: Option<(String, String)>,
}

/// The SigV4 extension, without the signature and the session token.
#[derive(Debug, Clone)]
pub struct SigV4Info {
    pub access_key_id: String,
    pub signed_at: Option<SigningTime>,
    pub session_token: bool,
}

const OID_ACCESS_POINT: &str = "1.3.6.1.4.1.4843.7.1";
const OID_SIGV4: &str = "1.3.6.1.4.1.4843.7.2";
const OID_FS_ID: &str = "1.3.6.1.4.1.4843.7.3";
const OID_CLIENT_INFO: &str = "1.3.6.1.4.1.4843.7.4";

/// Decodes a client certificate's subject, validity and efs-utils extensions.
pub fn decode_client_certificate(cert_der: &[u8]) -> Result<ClientCertInfo, String> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let extension = |oid: &str| {
        cert.extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == oid)
            .map(|e| e.value)
    };
    let utf8 = |value: &[u8]| match der::read_tlv(value) {
        Some((tag::UTF8_STRING, content, [])) => {
            Some(String::from_utf8_lossy(content).into_owned())
        }
        _ => None,
    };
    let validity = cert.validity();
    let sigv4 = extension(OID_SIGV4).map(|value| {
        let body = match der::read_tlv(value) {
            Some((tag::SEQUENCE, body, _)) => body,
            _ => &[][..],
        };
        let (akid, rest) = match der::read_tlv(body) {
            Some((tag::UTF8_STRING, akid, rest)) => {
                (String::from_utf8_lossy(akid).into_owned(), rest)
            }
            _ => (String::new(), &[][..]),
        };
        let rest = match der::read_tlv(rest) {
            Some((tag::OCTET_STRING, _signature, rest)) => rest,
            _ => &[][..],
        };
        let (signed_at, rest) = match der::read_tlv(rest) {
            Some((tag::UTC_TIME, time, rest)) => (parse_utc_time(time), rest),
            _ => (None, &[][..]),
        };
        SigV4Info {
            access_key_id: akid,
            signed_at,
            session_token: matches!(der::read_tlv(rest), Some((tag::CONTEXT_0, _, _))),
        }
    });
    let client_info = extension(OID_CLIENT_INFO).and_then(|value| match der::read_tlv(value) {
        Some((tag::SEQUENCE, body, _)) => {
            let (tag::UTF8_STRING, source, rest) = der::read_tlv(body)? else {
                return None;
            };
            let (tag::UTF8_STRING, version, _) = der::read_tlv(rest)? else {
                return None;
            };
            Some((
                String::from_utf8_lossy(source).into_owned(),
                String::from_utf8_lossy(version).into_owned(),
            ))
        }
        _ => None,
    });
    Ok(ClientCertInfo {
        subject: cert.subject().to_string(),
        not_before: time_of(validity.not_before.timestamp()),
        not_after: time_of(validity.not_after.timestamp()),
        fs_id: extension(OID_FS_ID).and_then(utf8),
        access_point: extension(OID_ACCESS_POINT).and_then(utf8),
        sigv4,
        client_info,
    })
}

fn time_of(unix: i64) -> Option<SigningTime> {
    let t = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(unix).ok()?))?;
    Some(SigningTime::from_system_time(t))
}

/// UTCTime `YYMMDDHHMMSSZ` (years 50–99 are 19xx).
fn parse_utc_time(bytes: &[u8]) -> Option<SigningTime> {
    // Checked as bytes first: slicing a `str` at 12 would panic inside a multi-byte character.
    let [digits @ .., b'Z'] = bytes else {
        return None;
    };
    if digits.len() != 12 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let century = if bytes[0] >= b'5' { "19" } else { "20" };
    SigningTime::parse_amz_date(&format!("{century}{}T{}", &text[..6], &text[6..])).ok()
}

/// A server certificate, summarized.
#[derive(Debug, Clone, Default)]
pub struct ServerCertInfo {
    pub subject: String,
    pub issuer: String,
    /// DNS names and IP addresses of the subjectAltName extension.
    pub names: Vec<String>,
    pub not_after: Option<SigningTime>,
}

pub fn decode_server_certificate(cert_der: &[u8]) -> Option<ServerCertInfo> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => names.push(escape_controls(n).into_owned()),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => names
                        .push(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).ok()?).to_string()),
                    16 => names.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).ok()?).to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    // The server's text: escaped before it reaches a terminal or a log.
    Some(ServerCertInfo {
        subject: escape_controls(&cert.subject().to_string()).into_owned(),
        issuer: escape_controls(&cert.issuer().to_string()).into_owned(),
        names,
        not_after: time_of(cert.validity().not_after.timestamp()),
    })
}

/// What the TLS step learned, for the later steps' diagnoses.
#[derive(Debug, Default)]
struct Seen {
    server: Option<ServerCertInfo>,
    /// The mount target its certificate names, when it names one.
    served: Option<MountTargetName>,
    client: Option<ClientCertInfo>,
}

impl Seen {
    fn has_sigv4(&self) -> bool {
        self.client.as_ref().is_some_and(|c| c.sigv4.is_some())
    }
}

/// What this check expects to reach: from `--fs-id`, else from the server name.
fn expected_target(plan: &Plan) -> Option<MountTargetName> {
    match &plan.expected {
        Some(e) => Some(MountTargetName {
            fs_id: Some(e.fs_id.clone()),
            service: e.service,
            region: e.region.clone(),
        }),
        None => parse_mount_target_name(&plan.server_name),
    }
}

/// Runs DNS, TCP, TLS, client certificate, bind and (when asked) NFS NULL, stopping at the
/// first step that leaves nothing to go on.
pub async fn run_network(plan: &Plan, report: &mut Report) {
    let Some(addrs) = dns_step(plan, report).await else {
        return;
    };
    let Some((tcp, addr)) = tcp_step(plan, addrs, report).await else {
        return;
    };
    let mut seen = Seen::default();
    let Some(mut tls) = tls_step(plan, tcp, addr, &mut seen, report).await else {
        return;
    };
    if !client_certificate_step(plan, &mut seen, report) {
        return;
    }
    let Some(leftover) = bind_step(plan, &mut tls, &seen, report).await else {
        return;
    };
    if plan.nfs_null {
        nfs_null_step(plan, &mut tls, leftover, report).await;
    } else {
        report.push(Step::skip(
            "nfs-null",
            "not requested (--nfs-null sends an NFS NULL call after the bind)",
        ));
    }
}

fn host_of(target: &str) -> &str {
    target
        .rsplit_once(':')
        .map_or(target, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']')
}

async fn dns_step(plan: &Plan, report: &mut Report) -> Option<Vec<SocketAddr>> {
    let start = Instant::now();
    if let Ok(addr) = plan.target.parse::<SocketAddr>() {
        report.push(
            Step::pass(
                "dns",
                start.elapsed(),
                format!("{} is an address: no lookup", plan.target),
            )
            .with_data(json!({ "addresses": [addr.to_string()] })),
        );
        return Some(vec![addr]);
    }
    let host = host_of(&plan.target);
    let fix = format!(
        "check the host name: an NLB's DNS name (the stack's NlbDns output) as --target \
         NLB_DNS:2049; a mount target's own name ({{az_id}}.{{fs_id}}.s3files.{{region}}.on.aws) \
         resolves only inside its VPC, so from elsewhere pass --target with the NLB{}",
        if plan.expected.is_some() && parse_mount_target_name(host).is_some() {
            " (this name was derived from --fs-id, --region and --az-id)"
        } else {
            ""
        }
    );
    let looked_up = timeout(plan.connect_timeout, tokio::net::lookup_host(&plan.target)).await;
    let addrs: Vec<SocketAddr> = match looked_up {
        Err(_) => {
            report.push(Step::problem(
                "dns",
                start.elapsed(),
                Problem::Unreachable,
                format!(
                    "the DNS lookup of {host} did not finish within {:?}",
                    plan.connect_timeout
                ),
                fix + "; and that this host's resolver answers",
            ));
            return None;
        }
        Ok(Err(e)) => {
            report.push(Step::problem(
                "dns",
                start.elapsed(),
                Problem::Unreachable,
                format!("cannot resolve {host}: {e}"),
                fix,
            ));
            return None;
        }
        Ok(Ok(addrs)) => addrs.collect(),
    };
    if addrs.is_empty() {
        report.push(Step::problem(
            "dns",
            start.elapsed(),
            Problem::Unreachable,
            format!("{host} resolved to no addresses"),
            fix,
        ));
        return None;
    }
    let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    report.push(
        Step::pass(
            "dns",
            start.elapsed(),
            format!(
                "{host} → {} ({} address{})",
                list.join(", "),
                list.len(),
                if list.len() == 1 { "" } else { "es" }
            ),
        )
        .with_data(json!({ "host": host, "addresses": list })),
    );
    Some(addrs)
}

/// Connects to every address at once; the first that answers (in RFC 8305 order) carries the
/// later steps. Each address gets its own line.
async fn tcp_step(
    plan: &Plan,
    addrs: Vec<SocketAddr>,
    report: &mut Report,
) -> Option<(TcpStream, SocketAddr)> {
    let order = crate::upstream::dial::interleave_families(addrs);
    let limit = plan.connect_timeout;
    let attempts = order.iter().map(|&addr| async move {
        let start = Instant::now();
        (
            addr,
            timeout(limit, TcpStream::connect(addr)).await,
            start.elapsed(),
        )
    });
    let results = futures_util::future::join_all(attempts).await;
    let mut chosen = None;
    let total = results.len();
    for (addr, result, elapsed) in results {
        let data = json!({ "address": addr.to_string() });
        let step = match result {
            Ok(Ok(stream)) => {
                let used = chosen.is_none();
                let note = if used {
                    if total > 1 {
                        " (used for the next steps)"
                    } else {
                        ""
                    }
                } else {
                    ""
                };
                if used {
                    let _ = stream.set_nodelay(true);
                    chosen = Some((stream, addr));
                }
                Step::pass("tcp", elapsed, format!("{addr} connected{note}"))
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Step::problem(
                "tcp",
                elapsed,
                Problem::Unreachable,
                format!(
                    "{addr} refused the connection: nothing listens on port {} there",
                    addr.port()
                ),
                "check --target's host and port (the NLB's TCP listener or the mount target, port \
                 2049); for an NLB, that its listener on 2049 exists and forwards to the mount target",
            ),
            Ok(Err(e)) => Step::problem(
                "tcp",
                elapsed,
                Problem::Unreachable,
                format!("connecting to {addr} failed: {e}"),
                "check the route to the target (VPN, VPC peering, internet access) and --target",
            ),
            Err(_) => Step::problem(
                "tcp",
                elapsed,
                Problem::Unreachable,
                format!(
                    "{addr} did not answer within {limit:?}: packets to TCP {} are dropped",
                    addr.port()
                ),
                "the NLB's (or mount target's) security group must allow TCP 2049 from this host \
                 (the stack's allowedCidr must include this host's public IP); check firewalls and \
                 network ACLs on the way, and that --target is the NLB's DNS name",
            ),
        };
        report.push(step.with_data(data));
    }
    chosen
}

/// The first bytes the peer sent, kept for the diagnosis of a failed handshake.
#[derive(Debug, Default)]
struct Received {
    first: Vec<u8>,
    total: usize,
}

/// A stream that remembers the start of what it read.
struct Recording<S> {
    inner: S,
    received: Arc<Mutex<Received>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Recording<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result {
            let new = &buf.filled()[before..];
            let mut received = this.received.lock().unwrap_or_else(|e| e.into_inner());
            received.total += new.len();
            let room = FIRST_BYTES.saturating_sub(received.first.len());
            received
                .first
                .extend_from_slice(&new[..new.len().min(room)]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recording<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

type CheckStream = TlsStream<Recording<TcpStream>>;

/// Verifies the server as the proxy does, and keeps the chain it was shown.
#[derive(Debug)]
struct ChainRecorder {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for ChainRecorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.chain.lock().unwrap_or_else(|e| e.into_inner()) = chain;
        match &self.webpki {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        HandshakeSignatures(self.provider.clone()).tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        HandshakeSignatures(self.provider.clone()).tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        HandshakeSignatures(self.provider.clone()).schemes()
    }
}

fn client_config(plan: &Plan, recorder: Arc<ChainRecorder>) -> Result<ClientConfig, TlsSetupError> {
    let builder = ClientConfig::builder_with_provider(recorder.provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(recorder);
    let mut config = match &plan.identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(TlsSetupError::ClientAuth)?,
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = true;
    Ok(config)
}

async fn tls_step(
    plan: &Plan,
    tcp: TcpStream,
    addr: SocketAddr,
    seen: &mut Seen,
    report: &mut Report,
) -> Option<CheckStream> {
    let start = Instant::now();
    let provider = tls::provider();
    let webpki = match &plan.roots {
        None => None,
        Some(roots) => {
            match WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
            {
                Ok(v) => Some(v),
                Err(e) => {
                    report.push(Step::fail(
                        "tls",
                        start.elapsed(),
                        format!("cannot use the trust anchors: {e}"),
                        "check --ca-file",
                    ));
                    return None;
                }
            }
        }
    };
    let recorder = Arc::new(ChainRecorder {
        webpki,
        provider,
        chain: Mutex::default(),
    });
    let config = match client_config(plan, recorder.clone()) {
        Ok(c) => c,
        Err(e) => {
            report.push(Step::fail(
                "tls",
                start.elapsed(),
                format!("cannot set up TLS: {e}"),
                "check --cert and --key (they must belong together)",
            ));
            return None;
        }
    };
    let name = match tls::server_name(&plan.server_name) {
        Ok(n) => n,
        Err(e) => {
            report.push(Step::fail(
                "tls",
                start.elapsed(),
                e.to_string(),
                "--server-name must be a DNS name, e.g. fs-0123456789abcdef0.s3files.us-east-1.on.aws",
            ));
            return None;
        }
    };
    let received = Arc::new(Mutex::new(Received::default()));
    let stream = Recording {
        inner: tcp,
        received: received.clone(),
    };
    let handshake = TlsConnector::from(Arc::new(config)).connect(name, stream);
    let outcome = timeout(plan.connect_timeout, handshake).await;
    let elapsed = start.elapsed();

    let chain = std::mem::take(&mut *recorder.chain.lock().unwrap_or_else(|e| e.into_inner()));
    seen.server = chain.first().and_then(|c| decode_server_certificate(c));
    seen.served = seen
        .server
        .as_ref()
        .and_then(|s| s.names.iter().find_map(|n| parse_mount_target_name(n)));
    let first = received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .first
        .clone();

    match outcome {
        Ok(Ok(stream)) => {
            report.push(tls_success(plan, &stream, &chain, seen, elapsed));
            Some(stream)
        }
        Ok(Err(err)) => {
            let step = tls_failure(plan, addr, Some(&err), &first, seen, elapsed).await;
            report.push(step);
            None
        }
        Err(_) => {
            let step = tls_failure(plan, addr, None, &first, seen, elapsed).await;
            report.push(step);
            None
        }
    }
}

fn describe_server_cert(info: &ServerCertInfo) -> String {
    let mut text = info.subject.clone();
    if !info.names.is_empty() {
        let shown: Vec<&str> = info.names.iter().take(4).map(String::as_str).collect();
        text.push_str(&format!(" [{}", shown.join(", ")));
        if info.names.len() > 4 {
            text.push_str(&format!(", +{}", info.names.len() - 4));
        }
        text.push(']');
    }
    text.push_str(&format!(", issued by {}", info.issuer));
    if let Some(t) = info.not_after {
        text.push_str(&format!(", valid until {t}"));
    }
    text
}

fn tls_success(
    plan: &Plan,
    stream: &CheckStream,
    chain: &[CertificateDer<'static>],
    seen: &Seen,
    elapsed: Duration,
) -> Step {
    let (_, conn) = stream.get_ref();
    let protocol = conn
        .protocol_version()
        .map_or("?".to_string(), |v| format!("{v:?}"));
    let cipher = conn
        .negotiated_cipher_suite()
        .map_or("?".to_string(), |s| format!("{:?}", s.suite()));
    let mut detail = format!("{protocol}, {cipher}");
    if let Some(server) = &seen.server {
        detail.push_str(&format!(
            "; server certificate {}",
            describe_server_cert(server)
        ));
    }
    if chain.len() > 1 {
        detail.push_str(&format!(" (+{} intermediate)", chain.len() - 1));
    }
    if plan.roots.is_some() {
        detail.push_str(&format!(
            "; chain trusted, name {} verified",
            plan.server_name
        ));
    } else {
        detail.push_str("; NOT verified (--no-verify)");
    }
    if let (Some(served), Some(expected)) = (&seen.served, expected_target(plan))
        && (served.region != expected.region
            || matches!((&served.fs_id, &expected.fs_id), (Some(a), Some(b)) if a != b))
    {
        detail.push_str(&format!(
            "; note: the certificate names {served}, but this check expects {expected}"
        ));
    }
    let data = json!({
        "protocol": protocol,
        "cipher_suite": cipher,
        "server_name": plan.server_name,
        "verified": plan.roots.is_some(),
        "chain": chain.iter().filter_map(|c| decode_server_certificate(c)).map(|c| json!({
            "subject": c.subject,
            "issuer": c.issuer,
            "names": c.names,
            "not_after": c.not_after.map(|t| t.to_string()),
        })).collect::<Vec<_>>(),
    });
    Step::pass("tls", elapsed, detail).with_data(data)
}

/// True when `bytes` start like a TLS record (handshake, alert, ...).
fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x14..=0x18, 0x03, ..])
}

/// True when `bytes` start with an RPC reply record.
fn looks_like_rpc_reply(bytes: &[u8]) -> bool {
    bytes.len() >= 16
        && bytes[8..12] == [0, 0, 0, 1]
        && matches!(bytes[12..16], [0, 0, 0, 0] | [0, 0, 0, 1])
}

/// Printable start of a peer's answer.
fn snippet(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(48)];
    let mut text = String::from("\"");
    text.push_str(&shown.escape_ascii().to_string());
    if bytes.len() > shown.len() {
        text.push('…');
    }
    text.push('"');
    text
}

/// What a plaintext NFS NULL call got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// An RPC reply with SUCCESS.
    Answered,
    /// An RPC reply refusing the call (AUTH_ERROR is "access denied").
    Refused(String),
    /// Bytes that are not an RPC reply.
    Bytes(Vec<u8>),
    /// Connection closed without an answer.
    Closed,
    /// No answer in time.
    Silent,
    /// The probe's own connection failed.
    NoConnection(String),
}

/// Sends an NFS v4 NULL call in plaintext on a new connection: does the peer speak NFS?
pub async fn plaintext_probe(addr: SocketAddr, limit: Duration) -> Probe {
    let work = async {
        let mut stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => return Probe::NoConnection(e.to_string()),
        };
        let xid: u32 = rand::random();
        let call = RpcMessage::call(xid, CallHeader::new(NFS_PROGRAM, NFS_VERSION, 0));
        let Ok(record) = call
            .encode()
            .map_err(|_| ())
            .and_then(|m| Record::from_message(&m).map_err(|_| ()))
        else {
            return Probe::NoConnection("cannot encode the NULL call".into());
        };
        if let Err(e) = stream.write_all(record.wire()).await {
            return Probe::NoConnection(e.to_string());
        }
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) if buf.is_empty() => return Probe::Closed,
                Ok(0) | Err(_) => return Probe::Bytes(buf),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.len() >= 4 {
                let len =
                    (u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) & 0x7fff_ffff) as usize;
                if !looks_like_rpc_reply(&buf) && buf.len() >= 16 {
                    return Probe::Bytes(buf);
                }
                if buf.len() >= 4 + len || buf.len() >= 4096 {
                    let message = &buf[4..buf.len().min(4 + len)];
                    return match RpcMessage::decode(message) {
                        Ok((header, _)) if matches!(header.body, MessageBody::Reply(_)) => {
                            match efs_rpc::parse_accepted_reply(message) {
                                Ok(_) => Probe::Answered,
                                Err(e) => Probe::Refused(e.to_string()),
                            }
                        }
                        _ => Probe::Bytes(buf),
                    };
                }
            }
        }
    };
    timeout(limit, work).await.unwrap_or(Probe::Silent)
}

const PLAIN_NFS_FIX: &str = "EFS and S3 Files serve NFS only inside TLS with an IAM client \
    certificate, which is what this proxy adds: a direct `mount -t nfs4` of the mount target or \
    NLB is refused with \"access denied\". Point --target at the mount target or the NLB (TCP \
    2049, TLS), and mount through `efs-proxy run` (mount -t nfs4 -o port=20049 127.0.0.1:/ MNT)";

const NO_TLS_FIX: &str = "--target must reach the mount target's TLS port: the NLB's TCP \
    listener on 2049 (a TCP pass-through, not a TLS or HTTP listener) or the mount target itself \
    at port 2049; check the host and port";

/// Classifies a failed handshake: `err` is `None` for a timeout.
async fn tls_failure(
    plan: &Plan,
    addr: SocketAddr,
    err: Option<&io::Error>,
    first: &[u8],
    seen: &Seen,
    elapsed: Duration,
) -> Step {
    use rustls::{AlertDescription, CertificateError, Error as TlsError};
    let tls_error = err.and_then(|e| e.get_ref()?.downcast_ref::<TlsError>());

    // The peer answered, but not in TLS.
    if !first.is_empty() && !looks_like_tls(first) {
        if looks_like_rpc_reply(first) {
            return Step::problem(
                "tls",
                elapsed,
                Problem::PlainNfs,
                format!(
                    "{addr} answered the TLS ClientHello with an RPC reply: it speaks NFS/RPC in \
                     plaintext, it is not an EFS/S3 Files mount target's TLS port"
                ),
                PLAIN_NFS_FIX,
            );
        }
        return Step::problem(
            "tls",
            elapsed,
            Problem::NoTls,
            format!(
                "{addr} is not a TLS endpoint: it answered the TLS ClientHello with {} ({} bytes, \
                 not a TLS record)",
                snippet(first),
                first.len()
            ),
            NO_TLS_FIX,
        );
    }

    // Silence or a hang-up before any TLS answer: is it a plain NFS server?
    let hung_up = err.is_some_and(|e| {
        tls_error.is_none()
            && matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            )
    });
    if first.is_empty() && (err.is_none() || hung_up) {
        let what = if err.is_none() {
            format!(
                "{addr} accepted TCP but did not answer the TLS ClientHello within {:?}",
                plan.connect_timeout
            )
        } else {
            format!("{addr} closed the connection at the TLS ClientHello without a TLS answer")
        };
        let probe = plaintext_probe(addr, plan.connect_timeout.min(PROBE_LIMIT)).await;
        return match probe {
            Probe::Answered => Step::problem(
                "tls",
                elapsed,
                Problem::PlainNfs,
                format!(
                    "{what}, but answered a plaintext NFS NULL call: it is an NFS server without \
                     TLS, not an EFS/S3 Files mount target or its NLB"
                ),
                PLAIN_NFS_FIX,
            ),
            Probe::Refused(reason) => Step::problem(
                "tls",
                elapsed,
                Problem::PlainNfs,
                format!(
                    "{what}, and refused a plaintext NFS NULL call ({reason}): \"access denied\" \
                     is what NFS without TLS and IAM gets"
                ),
                PLAIN_NFS_FIX,
            ),
            Probe::Bytes(bytes) => Step::problem(
                "tls",
                elapsed,
                Problem::NoTls,
                format!(
                    "{what}; to a plaintext NFS call it answered {} (not RPC)",
                    snippet(&bytes)
                ),
                NO_TLS_FIX,
            ),
            Probe::Closed | Probe::Silent | Probe::NoConnection(_) => Step::problem(
                "tls",
                elapsed,
                Problem::NoTls,
                format!(
                    "{what}, and does not answer a plaintext NFS call either: it is not a TLS endpoint"
                ),
                NO_TLS_FIX,
            ),
        };
    }

    let Some(err) = err else {
        return Step::fail(
            "tls",
            elapsed,
            format!(
                "the TLS handshake with {addr} did not finish within {:?}",
                plan.connect_timeout
            ),
            "check the network path; raise --connect-timeout on a slow link",
        );
    };
    let (reason, hint) = tls_hint(err);
    let served_names = seen
        .server
        .as_ref()
        .map(|s| s.names.join(", "))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "no DNS names".to_string());
    match tls_error {
        Some(TlsError::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => {
            if let (Some(served), Some(expected)) = (&seen.served, expected_target(plan)) {
                let region_differs = served.region != expected.region;
                let fs_differs =
                    matches!((&served.fs_id, &expected.fs_id), (Some(a), Some(b)) if a != b);
                if region_differs || fs_differs {
                    let from = if plan.expected.is_some() {
                        "--fs-id/--region"
                    } else {
                        "--server-name"
                    };
                    return Step::problem(
                        "tls",
                        elapsed,
                        Problem::WrongRegionOrFsId,
                        format!(
                            "the mount target at {addr} serves {served} (its certificate names \
                             {served_names}), but {from} expect{} {expected} (server name {})",
                            if from == "--server-name" { "s" } else { "" },
                            plan.server_name
                        ),
                        format!(
                            "check {}: {} the file system's own{}",
                            if region_differs && fs_differs {
                                "--region and --fs-id"
                            } else if region_differs {
                                "--region"
                            } else {
                                "--fs-id"
                            },
                            if region_differs && fs_differs {
                                "they must be"
                            } else {
                                "it must be"
                            },
                            if region_differs {
                                "; the SigV4 signature is only valid in that region"
                            } else {
                                " (or --target/--az-id must lead to a mount target of this file system)"
                            }
                        ),
                    );
                }
            }
            Step::fail(
                "tls",
                elapsed,
                format!(
                    "the server certificate does not name {} (it names {served_names}): {reason}",
                    plan.server_name
                ),
                "--server-name must be the mount target's name (e.g. \
                 fs-0123456789abcdef0.s3files.us-east-1.on.aws), not the NLB's: the NLB goes in \
                 --target only",
            )
        }
        Some(TlsError::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied
            | AlertDescription::UnknownCA,
        )) if !plan.expected.as_ref().is_some_and(|e| e.signed) => Step::problem(
            "tls",
            elapsed,
            Problem::TlsWithoutIam,
            format!(
                "the mount target refused the client certificate ({reason}); {}",
                if plan.identity.is_none() {
                    "none was presented"
                } else {
                    "it was not signed with IAM credentials here"
                }
            ),
            IAM_FIX,
        ),
        _ => Step::fail(
            "tls",
            elapsed,
            format!("handshake with {addr} failed: {reason}"),
            hint,
        ),
    }
}

const IAM_FIX: &str = "turn IAM on: drop --cert/--no-iam and pass --fs-id ID --region REGION \
    --service s3files|efs with AWS credentials (environment, --profile, or an instance, task or \
    pod role); the proxy then signs the client certificate with SigV4";

/// Decodes and checks the client certificate; false stops the run.
fn client_certificate_step(plan: &Plan, seen: &mut Seen, report: &mut Report) -> bool {
    let start = Instant::now();
    let Some(identity) = &plan.identity else {
        report.push(Step::problem(
            "client-cert",
            start.elapsed(),
            Problem::TlsWithoutIam,
            "no client certificate: EFS and S3 Files mount targets authenticate clients by an \
             IAM-signed certificate",
            IAM_FIX,
        ));
        return false;
    };
    let Some(cert) = identity.chain.first() else {
        report.push(Step::fail(
            "client-cert",
            start.elapsed(),
            "the client certificate file holds no certificate",
            "check --cert",
        ));
        return false;
    };
    let info = match decode_client_certificate(cert) {
        Ok(i) => i,
        Err(e) => {
            report.push(Step::fail(
                "client-cert",
                start.elapsed(),
                format!("cannot decode the client certificate: {e}"),
                "check --cert",
            ));
            return false;
        }
    };
    let now = SystemTime::now();
    let mut parts = vec![info.subject.clone()];
    if let (Some(nb), Some(na)) = (info.not_before, info.not_after) {
        parts.push(format!("valid {nb} to {na}"));
    }
    let mut extensions = Vec::new();
    if let Some(fs) = &info.fs_id {
        extensions.push(format!("file system {fs}"));
    }
    if let Some(ap) = &info.access_point {
        extensions.push(format!("access point {ap}"));
    }
    match &info.sigv4 {
        Some(s) => {
            let mut text = format!("SigV4 by access key {}", s.access_key_id);
            if let Some(at) = s.signed_at {
                let age = now.duration_since(at.system_time()).unwrap_or_default();
                text.push_str(&format!(", signed at {at} ({} ago)", human(age)));
            }
            if let Some(e) = plan.expected.as_ref().filter(|e| e.signed) {
                text.push_str(&format!(" for {} in {}", e.service, e.region));
            }
            if s.session_token {
                text.push_str(", session token present (not shown)");
            }
            extensions.push(text);
        }
        None => extensions.push(
            "no SigV4 signature (TLS without IAM: only file systems whose policy does not require \
             IAM accept it)"
                .to_string(),
        ),
    }
    if let Some((source, version)) = &info.client_info {
        extensions.push(format!("client {source} {version}"));
    }
    parts.push(extensions.join("; "));
    let detail = parts.join(", ");
    let data = json!({
        "subject": info.subject,
        "not_before": info.not_before.map(|t| t.to_string()),
        "not_after": info.not_after.map(|t| t.to_string()),
        "fs_id": info.fs_id,
        "access_point": info.access_point,
        "sigv4": info.sigv4.as_ref().map(|s| json!({
            "access_key_id": s.access_key_id,
            "signed_at": s.signed_at.map(|t| t.to_string()),
            "session_token": s.session_token,
        })),
        "client_info": info.client_info.as_ref().map(|(s, v)| json!({"source": s, "version": v})),
    });

    let failure = if info.not_before.is_some_and(|t| now < t.system_time())
        || info.not_after.is_some_and(|t| now > t.system_time())
    {
        Some((
            None,
            format!("the certificate is not valid now ({detail})"),
            "make a new certificate (without --cert the proxy makes and refreshes it), and check \
             this host's clock"
                .to_string(),
        ))
    } else if let (Some(e), Some(fs)) = (&plan.expected, &info.fs_id)
        && *fs != e.fs_id
    {
        Some((
            Some(Problem::WrongRegionOrFsId),
            format!(
                "the certificate was made for file system {fs}, but --fs-id is {}",
                e.fs_id
            ),
            "use a certificate for this file system (or drop --cert: the proxy makes one)".into(),
        ))
    } else if let Some(at) = info.sigv4.as_ref().and_then(|s| s.signed_at)
        && now
            .duration_since(at.system_time())
            .is_ok_and(|age| age > MAX_SIGNATURE_AGE)
    {
        Some((
            None,
            format!(
                "the SigV4 signature is from {at}, more than 24 h ago: mount targets refuse it"
            ),
            "make a new certificate (without --cert the proxy signs and refreshes it)".into(),
        ))
    } else {
        None
    };
    seen.client = Some(info);
    let step = match failure {
        Some((Some(problem), detail, fix)) => {
            Step::problem("client-cert", start.elapsed(), problem, detail, fix)
        }
        Some((None, detail, fix)) => Step::fail("client-cert", start.elapsed(), detail, fix),
        None => Step::pass("client-cert", start.elapsed(), detail),
    };
    let ok = step.status == Status::Pass;
    report.push(step.with_data(data));
    ok
}

fn describe_scale_up(c: &ScaleUpConfig) -> String {
    format!(
        "scale-up: up to {} connections above {:.0} MiB/s",
        c.max_multiplexed_connections,
        f64::from(c.scale_up_bytes_per_sec_threshold) / (1024.0 * 1024.0)
    )
}

async fn bind_step(
    plan: &Plan,
    stream: &mut CheckStream,
    seen: &Seen,
    report: &mut Report,
) -> Option<BytesMut> {
    let start = Instant::now();
    let id = ProxyIdentity::default().next_incarnation();
    let result = bind_client_to_partition(
        stream,
        &id,
        efs_rpc::DEFAULT_MAX_RECORD_SIZE,
        plan.bind_timeout,
    )
    .await;
    let elapsed = start.elapsed();
    let (response, leftover) = match result {
        Ok(ok) => ok,
        Err(BindError::Rpc(ReplyError::ProgUnavail)) => {
            report.push(
                Step::pass(
                    "bind",
                    elapsed,
                    "the server does not know AWSFILE (PROG_UNAVAIL): a plain NFS server behind \
                     TLS, not an EFS/S3 Files mount target; the proxy forwards without bind",
                )
                .with_data(json!({ "reply": "PROG_UNAVAIL" })),
            );
            return Some(BytesMut::new());
        }
        Err(e @ (BindError::Closed | BindError::Io { .. })) => {
            report.push(bind_hang_up(plan, seen, &e.to_string(), elapsed));
            return None;
        }
        Err(BindError::Timeout(limit)) => {
            report.push(Step::fail(
                "bind",
                elapsed,
                format!("no answer to bind_client_to_partition within {limit:?}"),
                "the TLS server does not speak AWSFILE: check that --target is an EFS/S3 Files \
                 mount target (or its NLB); raise --bind-timeout on a slow link",
            ));
            return None;
        }
        Err(e) => {
            report.push(Step::fail(
                "bind",
                elapsed,
                format!("bind_client_to_partition failed: {e}"),
                "check that --target is an EFS/S3 Files mount target (or its NLB)",
            ));
            return None;
        }
    };
    let scale = &response.scale_up_config;
    let scale_json = json!({
        "max_multiplexed_connections": scale.max_multiplexed_connections,
        "scale_up_bytes_per_sec_threshold": scale.scale_up_bytes_per_sec_threshold,
        "scale_up_threshold_breached_duration_sec": scale.scale_up_threshold_breached_duration_sec,
        "scale_up_lookback_window_size_sec": scale.scale_up_lookback_window_size_sec,
    });
    let step = match &response.bind_response {
        BindResponse::Ready(p) | BindResponse::Preferred(p) => {
            let kind = if matches!(response.bind_response, BindResponse::Ready(_)) {
                "READY"
            } else {
                "PREFERRED (bound; another partition is preferred)"
            };
            Step::pass(
                "bind",
                elapsed,
                format!("{kind} on partition {p}; {}", describe_scale_up(scale)),
            )
            .with_data(json!({
                "reply": kind.split(' ').next(),
                "partition": hex::encode(p.0),
                "scale_up": scale_json,
            }))
        }
        BindResponse::Retry(msg) => Step::fail(
            "bind",
            elapsed,
            format!("RETRY ({msg:?}): the server asks for another connection"),
            "run the check again; the proxy reconnects by itself",
        )
        .with_data(json!({ "reply": "RETRY", "message": msg })),
        BindResponse::RetryLater(msg) => Step::fail(
            "bind",
            elapsed,
            format!("RETRY_LATER ({msg:?}): the mount target is busy"),
            "try again later (the proxy backs off 300 s)",
        )
        .with_data(json!({ "reply": "RETRY_LATER", "message": msg })),
        BindResponse::Error(msg) => {
            let (problem, detail, fix) = bind_refusal(msg, plan, seen);
            let mut step = match problem {
                Some(p) => Step::problem("bind", elapsed, p, detail, fix),
                None => Step::fail("bind", elapsed, detail, fix),
            };
            step.data = json!({ "reply": "ERROR", "message": msg });
            step
        }
        BindResponse::Unknown(d) => Step::fail(
            "bind",
            elapsed,
            format!("unknown bind reply {d}"),
            "this mount target speaks a newer AWSFILE than this proxy knows",
        )
        .with_data(json!({ "reply": d })),
    };
    let ok = step.status == Status::Pass;
    report.push(step);
    ok.then_some(leftover)
}

/// The fs ids a message mentions.
fn fs_ids_in(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| names::check_fs_id(w).is_ok())
        .map(str::to_string)
        .collect()
}

/// Maps a bind ERROR (the fake and, by its words, a real mount target's reason) to a problem,
/// a detail and the fix.
fn bind_refusal(msg: &str, plan: &Plan, seen: &Seen) -> (Option<Problem>, String, String) {
    let lower = msg.to_ascii_lowercase();
    let said = format!("the mount target said {msg:?}");
    let has_sigv4 = seen.has_sigv4();
    let cert_fs = seen
        .client
        .as_ref()
        .and_then(|c| c.fs_id.clone())
        .or_else(|| plan.expected.as_ref().map(|e| e.fs_id.clone()));
    let signed_region = plan
        .expected
        .as_ref()
        .filter(|e| e.signed)
        .map(|e| e.region.clone());
    let without_iam = [
        "no iam signature",
        "no sigv4",
        "no client certificate",
        "no file system id",
    ]
    .iter()
    .any(|k| lower.contains(k));

    if without_iam || (!has_sigv4 && !lower.contains("file system id")) {
        let why = if has_sigv4 {
            String::new()
        } else if seen.client.as_ref().is_some_and(|c| c.fs_id.is_none()) {
            " (the certificate has neither a SigV4 signature nor a file system id: not an IAM \
             certificate)"
                .to_string()
        } else {
            " (the certificate has no SigV4 signature, extension 1.3.6.1.4.1.4843.7.2)".to_string()
        };
        return (
            Some(Problem::TlsWithoutIam),
            format!(
                "the mount target requires IAM and refused the client certificate{why}: {said}"
            ),
            IAM_FIX.to_string(),
        );
    }
    if lower.contains("file system id") || lower.contains("filesystem id") {
        let signed = cert_fs.clone().unwrap_or_else(|| "?".into());
        let served = fs_ids_in(msg)
            .into_iter()
            .find(|f| Some(f) != cert_fs.as_ref())
            .or_else(|| seen.served.as_ref().and_then(|s| s.fs_id.clone()));
        let region = signed_region
            .as_deref()
            .map(|r| format!(" (region {r})"))
            .unwrap_or_default();
        return (
            Some(Problem::WrongRegionOrFsId),
            format!(
                "the certificate was signed for fs id {signed}{region}, but the mount target \
                 serves {}: {said}",
                served.as_deref().unwrap_or("another file system")
            ),
            format!(
                "check --fs-id: it must be the file system of this mount target{}; or point \
                 --target/--az-id at a mount target of {signed}",
                served.map(|s| format!(" ({s})")).unwrap_or_default()
            ),
        );
    }
    if lower.contains("signature mismatch") || lower.contains("region") {
        let region = signed_region.unwrap_or_else(|| "?".into());
        let fs = cert_fs.unwrap_or_else(|| "?".into());
        let served = match &seen.served {
            Some(s) if s.region != region => format!(
                "serves region {} (its certificate names {})",
                s.region,
                seen.server
                    .as_ref()
                    .map(|c| c.names.join(", "))
                    .unwrap_or_default()
            ),
            _ => "could not verify the signature, which is scoped to the region".to_string(),
        };
        return (
            Some(Problem::WrongRegionOrFsId),
            format!(
                "the certificate was signed for region {region} (fs id {fs}), but the mount target {served}: {said}"
            ),
            "check --region: it must be the file system's own region; if it is, the secret \
             access key or session token does not belong to the access key in the certificate"
                .to_string(),
        );
    }
    if lower.contains("wrong service") || lower.contains("service") {
        return (
            None,
            format!("the certificate is signed for the wrong service: {said}"),
            "check --service: s3files for S3 Files file systems, efs for EFS".to_string(),
        );
    }
    if ["expired", "not yet valid", "future", "skew"]
        .iter()
        .any(|k| lower.contains(k))
    {
        return (
            None,
            format!("the certificate or its signature is outside its validity: {said}"),
            "check this host's clock (NTP) and make a new certificate".to_string(),
        );
    }
    if lower.contains("access key") {
        return (
            None,
            format!("the access key is not accepted: {said}"),
            "check the credentials (see the credentials step) and that they belong to an \
             active IAM identity"
                .to_string(),
        );
    }
    (
        None,
        format!("the mount target refused the bind: {said}"),
        "check the file system policy (it must allow this identity s3files:ClientMount or \
         elasticfilesystem:ClientMount) and the mount target's state"
            .to_string(),
    )
}

/// The server hung up (or sent an alert) instead of answering bind: in TLS 1.3 a refused
/// client certificate shows here.
fn bind_hang_up(plan: &Plan, seen: &Seen, error: &str, elapsed: Duration) -> Step {
    if !seen.has_sigv4() {
        return Step::problem(
            "bind",
            elapsed,
            Problem::TlsWithoutIam,
            format!(
                "the mount target hung up after the TLS handshake instead of answering bind; the \
                 client certificate has no SigV4 signature, which a file system requiring IAM \
                 refuses ({error})"
            ),
            IAM_FIX,
        );
    }
    if let (Some(served), Some(expected)) = (&seen.served, expected_target(plan))
        && (served.region != expected.region
            || matches!((&served.fs_id, &expected.fs_id), (Some(a), Some(b)) if a != b))
    {
        return Step::problem(
            "bind",
            elapsed,
            Problem::WrongRegionOrFsId,
            format!(
                "the certificate was signed for {expected}, but the mount target serves \
                 {served}; it hung up instead of answering bind ({error})"
            ),
            "check --region and --fs-id: they must be the file system's own",
        );
    }
    Step::fail(
        "bind",
        elapsed,
        format!(
            "the mount target hung up after the TLS handshake instead of answering bind: it \
             refused the IAM client certificate ({error})"
        ),
        "check that the file system policy allows this identity (s3files:ClientMount or \
         elasticfilesystem:ClientMount), that --fs-id and --region are the file system's, and \
         that the credentials are valid",
    )
}

async fn nfs_null_step(
    plan: &Plan,
    stream: &mut CheckStream,
    mut buf: BytesMut,
    report: &mut Report,
) {
    let start = Instant::now();
    let xid: u32 = rand::random();
    let exchange = async {
        let call = RpcMessage::call(xid, CallHeader::new(NFS_PROGRAM, NFS_VERSION, 0))
            .encode()
            .map_err(|e| e.to_string())?;
        let record = Record::from_message(&call).map_err(|e| e.to_string())?;
        stream
            .write_all(record.wire())
            .await
            .map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let mut codec = RecordCodec::new(efs_rpc::DEFAULT_MAX_RECORD_SIZE);
        loop {
            if let Some(reply) = codec.decode(&mut buf).map_err(|e| e.to_string())? {
                return Ok(reply);
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) => return Err("the server closed the connection".to_string()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let step = match timeout(plan.bind_timeout, exchange).await {
        Err(_) => Step::fail(
            "nfs-null",
            start.elapsed(),
            format!(
                "no answer to the NFS NULL call within {:?}",
                plan.bind_timeout
            ),
            "the mount target bound the connection but does not answer NFS: check its state",
        ),
        Ok(Err(e)) => Step::fail(
            "nfs-null",
            start.elapsed(),
            format!("the NFS NULL call failed: {e}"),
            "the mount target bound the connection but dropped NFS: check its state",
        ),
        Ok(Ok(reply)) => match efs_rpc::parse_accepted_reply(reply.message()) {
            Ok((got, _)) if got == xid => Step::pass(
                "nfs-null",
                start.elapsed(),
                format!("NFS v{NFS_VERSION} NULL answered"),
            ),
            Ok((got, _)) => Step::fail(
                "nfs-null",
                start.elapsed(),
                format!("the reply's xid {got:#010x} is not the call's {xid:#010x}"),
                "the server mixed up replies",
            ),
            Err(ReplyError::AuthError(stat)) => Step::fail(
                "nfs-null",
                start.elapsed(),
                format!("access denied: AUTH_ERROR {}", stat.0),
                "the file system policy refuses this identity: it must allow s3files:ClientMount \
                 or elasticfilesystem:ClientMount",
            ),
            Err(e) => Step::fail(
                "nfs-null",
                start.elapsed(),
                format!("the NFS NULL call was refused: {e}"),
                "the server is not an NFSv4 server",
            ),
        },
    };
    report.push(step);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_target_names_are_taken_apart() {
        let n = parse_mount_target_name("use1-az1.fs-0123456789abcdef0.s3files.us-east-1.on.aws")
            .unwrap();
        assert_eq!(n.fs_id.as_deref(), Some("fs-0123456789abcdef0"));
        assert_eq!(n.service, Service::S3Files);
        assert_eq!(n.region, "us-east-1");
        let n = parse_mount_target_name("*.efs.eu-west-3.amazonaws.com").unwrap();
        assert_eq!((n.fs_id, n.region.as_str()), (None, "eu-west-3"));
        assert!(parse_mount_target_name("nlb-123.elb.us-east-1.amazonaws.com").is_none());
        assert!(parse_mount_target_name("localhost").is_none());
        assert!(parse_mount_target_name("efs.us-east-1").is_none());
    }

    #[test]
    fn utc_times_are_parsed_without_panicking_on_any_bytes() {
        assert!(parse_utc_time(b"491231235959Z").is_some());
        assert!(parse_utc_time(b"991231235959Z").is_some());
        // A multi-byte character across byte 12 used to panic (`str` slicing).
        for bad in [
            "12345678901é".as_bytes(),
            &b"1234567890\xc3\xa9Z"[..],
            b"1234567890123",
            b"12345678901Z",
            b"",
            b"Z",
        ] {
            assert!(parse_utc_time(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn peers_are_told_apart_by_their_first_bytes() {
        assert!(looks_like_tls(&[0x16, 0x03, 0x03, 0x00, 0x10]));
        assert!(looks_like_tls(&[0x15, 0x03, 0x03, 0x00, 0x02]));
        assert!(!looks_like_tls(b"HTTP/1.1 400 Bad Request"));
        let reply = RpcMessage::reply(
            7,
            efs_rpc::ReplyHeader::accepted(efs_rpc::AcceptStat::Success),
        )
        .encode()
        .unwrap();
        let record = Record::from_message(&reply).unwrap();
        assert!(looks_like_rpc_reply(record.wire()));
        assert!(!looks_like_rpc_reply(b"SSH-2.0-OpenSSH_9.2p1 Debian"));
        assert_eq!(snippet(b"ab\r\n\x00"), "\"ab\\r\\n\\x00\"");
    }

    #[test]
    fn fs_ids_are_found_in_messages() {
        assert_eq!(
            fs_ids_in(
                "wrong file system id: the certificate is for fs-0fedcba987654321, this mount target serves fs-0123456789abcdef0"
            ),
            vec!["fs-0fedcba987654321", "fs-0123456789abcdef0"]
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(format_elapsed(Duration::from_micros(120)), "0.12 ms");
        assert_eq!(format_elapsed(Duration::from_millis(123)), "123.0 ms");
        assert_eq!(format_elapsed(Duration::from_millis(1500)), "1.50 s");
        assert_eq!(human(Duration::from_secs(42)), "42 s");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 120)), "3 h 2 min");
    }

    #[test]
    fn skipped_steps_name_the_failure() {
        let mut report = Report::new(false);
        report.push(Step::pass("config", Duration::ZERO, "ok"));
        report.push(Step::skip("credentials", "not used"));
        report.push(Step::problem(
            "dns",
            Duration::ZERO,
            Problem::Unreachable,
            "cannot resolve x",
            "fix it",
        ));
        report.skip_rest();
        assert!(!report.ok());
        assert_eq!(report.steps.len(), STEPS.len());
        assert_eq!(report.steps[3].detail, "skipped: dns failed");
        assert_eq!(report.problem(), Some(Problem::Unreachable));
        assert!(report.summary().starts_with("check failed: unreachable"));
        let json = report.to_json();
        assert_eq!(json["problem"], "unreachable");
        assert_eq!(json["steps"][2]["status"], "fail");
    }
}
