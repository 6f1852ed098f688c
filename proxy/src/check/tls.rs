//! The TLS step: the handshake as the proxy makes it, the server certificate it was shown,
//! and, when it fails, what the peer did instead ([`tls_failure`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::diagnose::{Diagnosis, ExpectedFrom, Quiet, TlsFailure, mismatch};
use super::probe::{self, Recording, looks_like_rpc_reply, looks_like_tls, plaintext_probe};
use super::report::plural;
use super::{Plan, Report, Seen, Step, StepName, parse_mount_target_name};
use crate::error::tls_hint;
use crate::files::escape_controls;
use crate::iam::SigningTime;
use crate::upstream::tls::{self, NamePolicy, ServerVerifier, TrustAnchors};

/// Longest wait for an answer to the plaintext NFS probe.
const PROBE_LIMIT: Duration = Duration::from_secs(3);

/// The TLS stream the later steps use.
pub(super) type CheckStream = TlsStream<Recording<TcpStream>>;

/// Performs the handshake; `None` stops the run.
pub(super) async fn step(
    plan: &Plan,
    tcp: TcpStream,
    addr: SocketAddr,
    seen: &mut Seen,
    report: &mut Report,
) -> Option<CheckStream> {
    let start = Instant::now();
    let (config, verifier) = match configure(plan) {
        Ok(ready) => ready,
        Err((detail, fix)) => {
            report.push(Step::fail(StepName::Tls, start.elapsed(), detail, fix));
            return None;
        }
    };
    let (stream, received) = probe::recording(tcp);
    let name = match tls::server_name(&plan.server_name) {
        Ok(n) => n,
        Err(e) => {
            report.push(Step::fail(
                StepName::Tls,
                start.elapsed(),
                e.to_string(),
                "--server-name must be a DNS name, e.g. fs-0123456789abcdef0.s3files.us-east-1.on.aws",
            ));
            return None;
        }
    };
    let handshake = TlsConnector::from(Arc::new(config)).connect(name, stream);
    let outcome = timeout(plan.connect_timeout, handshake).await;
    let elapsed = start.elapsed();

    let chain = verifier.take_shown_chain();
    seen.server = chain.first().and_then(|c| decode_server_certificate(c));
    seen.served = seen
        .server
        .as_ref()
        .and_then(|s| s.names.iter().find_map(|n| parse_mount_target_name(n)));
    let first = probe::first_bytes(&received);
    let error = match outcome {
        Ok(Ok(stream)) => {
            report.push(success(plan, &stream, &chain, seen, elapsed));
            return Some(stream);
        }
        Ok(Err(err)) => Some(err),
        Err(_) => None,
    };
    let failed = FailedHandshake {
        addr,
        error: error.as_ref(),
        first: &first,
    };
    let diagnosis = match tls_failure(plan, seen, &failed) {
        Ok(diagnosis) => diagnosis,
        Err(quiet) => {
            let probe = plaintext_probe(addr, plan.connect_timeout.min(PROBE_LIMIT)).await;
            Diagnosis::Tls(TlsFailure::Probed { quiet, probe })
        }
    };
    report.push(diagnosis.step(StepName::Tls, elapsed));
    None
}

/// The client configuration and its verifier (which records the chain it was shown), or the
/// detail and fix of why not.
fn configure(plan: &Plan) -> Result<(ClientConfig, Arc<ServerVerifier>), (String, &'static str)> {
    let verifier = ServerVerifier::new(&plan.anchors, NamePolicy::Verify)
        .map_err(|e| (e.to_string(), "check --ca-file"))?
        .recording();
    let verifier = Arc::new(verifier);
    let config = tls::config_with(verifier.clone(), plan.identity.as_ref()).map_err(|e| {
        (
            format!("cannot set up TLS: {e}"),
            "check --cert and --key (they must belong together)",
        )
    })?;
    Ok((config, verifier))
}

/// The trust anchors in words, for the configuration step.
pub fn describe_trust(anchors: &TrustAnchors) -> String {
    let ca_file = anchors
        .ca_file
        .as_ref()
        .map(|(path, n)| format!("CA file {} ({})", path.display(), plural(*n, "certificate")));
    let system = anchors
        .system
        .map(|n| format!("system trust store ({})", plural(n, "certificate")));
    match (ca_file, system) {
        (Some(file), Some(system)) => format!("{file} and the {system}"),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => "none (--no-verify: the server certificate is not checked)".to_string(),
    }
}

/// The line of a finished handshake: protocol, cipher, the server certificate, what was
/// verified, and a note when the certificate names another mount target than expected.
fn success(
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
        detail.push_str(&format!("; server certificate {}", describe(server)));
    }
    if chain.len() > 1 {
        detail.push_str(&format!(" (+{} intermediate)", chain.len() - 1));
    }
    if plan.anchors.verifies() {
        detail.push_str(&format!(
            "; chain trusted, name {} verified",
            plan.server_name
        ));
    } else {
        detail.push_str("; NOT verified (--no-verify)");
    }
    if let (Some(served), Some(expected)) = (&seen.served, plan.expected_target())
        && mismatch(served, &expected).is_some()
    {
        detail.push_str(&format!(
            "; note: the certificate names {served}, but this check expects {expected}"
        ));
    }
    let data = json!({
        "protocol": protocol,
        "cipher_suite": cipher,
        "server_name": plan.server_name,
        "verified": plan.anchors.verifies(),
        "chain": chain.iter().filter_map(|c| decode_server_certificate(c)).map(|c| c.to_json()).collect::<Vec<_>>(),
    });
    Step::pass(StepName::Tls, elapsed, detail).with_data(data)
}

/// A server certificate, summarized.
#[derive(Debug, Clone, Default)]
pub struct ServerCertInfo {
    /// The subject's distinguished name (RFC 4514 form, control characters escaped).
    pub subject: String,
    /// The issuer's distinguished name, in the same form.
    pub issuer: String,
    /// DNS names and IP addresses of the subjectAltName extension.
    pub names: Vec<String>,
    /// The end of the validity period; `None` when out of the representable range.
    pub not_after: Option<SigningTime>,
}

impl ServerCertInfo {
    fn to_json(&self) -> Value {
        json!({
            "subject": self.subject,
            "issuer": self.issuer,
            "names": self.names,
            "not_after": self.not_after.map(|t| t.to_string()),
        })
    }
}

/// Subject, names (the first four), issuer and expiry.
fn describe(info: &ServerCertInfo) -> String {
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

/// Decodes what the report shows of a server certificate; every string is the server's text,
/// escaped before it reaches a terminal or a log.
pub fn decode_server_certificate(cert_der: &[u8]) -> Option<ServerCertInfo> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => names.push(escape_controls(n).into_owned()),
                GeneralName::IPAddress(ip) => names.extend(ip_address(ip)),
                _ => {}
            }
        }
    }
    Some(ServerCertInfo {
        subject: escape_controls(&cert.subject().to_string()).into_owned(),
        issuer: escape_controls(&cert.issuer().to_string()).into_owned(),
        names,
        not_after: SigningTime::from_unix(cert.validity().not_after.timestamp()),
    })
}

/// An IPv4 or IPv6 address of a subjectAltName; `None` for any other length.
fn ip_address(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).to_string()),
        _ => None,
    }
}

/// What a failed handshake left to go on.
pub(super) struct FailedHandshake<'a> {
    pub addr: SocketAddr,
    /// `None` for a timeout.
    pub error: Option<&'a io::Error>,
    /// The first bytes the peer sent.
    pub first: &'a [u8],
}

/// Classifies a failed handshake; `Err` when the peer said nothing in TLS and only a
/// plaintext probe can tell what it is (see [`after_probe`]).
pub(super) fn tls_failure(
    plan: &Plan,
    seen: &Seen,
    failed: &FailedHandshake<'_>,
) -> Result<Diagnosis, Quiet> {
    use rustls::{AlertDescription as Alert, CertificateError, Error as TlsError};
    let FailedHandshake { addr, error, first } = *failed;
    // The peer answered, but not in TLS.
    if !first.is_empty() && !looks_like_tls(first) {
        return Ok(Diagnosis::Tls(if looks_like_rpc_reply(first) {
            TlsFailure::RpcReply { addr }
        } else {
            TlsFailure::NotTls {
                addr,
                first: first.to_vec(),
            }
        }));
    }
    let tls_error = error.and_then(|e| e.get_ref()?.downcast_ref::<TlsError>());
    let Some(error) = error else {
        return match first {
            [] => Err(Quiet::Silent {
                addr,
                limit: plan.connect_timeout,
            }),
            _ => Ok(Diagnosis::Tls(TlsFailure::Timeout {
                addr,
                limit: plan.connect_timeout,
            })),
        };
    };
    if first.is_empty() && tls_error.is_none() && is_hang_up(error) {
        return Err(Quiet::HungUp { addr });
    }
    let (reason, hint) = tls_hint(error);
    Ok(Diagnosis::Tls(match tls_error {
        Some(TlsError::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => name_failure(plan, seen, addr, reason),
        Some(TlsError::AlertReceived(
            Alert::CertificateRequired
            | Alert::BadCertificate
            | Alert::CertificateUnknown
            | Alert::UnsupportedCertificate
            | Alert::AccessDenied
            | Alert::UnknownCA,
        )) if !plan.signs() => TlsFailure::ClientCertRefused {
            reason,
            presented: plan.identity.is_some(),
        },
        _ => TlsFailure::Other { addr, reason, hint },
    }))
}

/// The connection ended without a TLS error: EOF, reset, abort.
fn is_hang_up(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// The server certificate does not carry the server name: another mount target, or the
/// wrong name.
fn name_failure(plan: &Plan, seen: &Seen, addr: SocketAddr, reason: String) -> TlsFailure {
    let served_names = Some(seen.served_names())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "no DNS names".to_string());
    if let (Some(served), Some(expected)) = (&seen.served, plan.expected_target())
        && let Some(mismatch) = mismatch(served, &expected)
    {
        return TlsFailure::WrongMountTarget {
            addr,
            served: served.clone(),
            served_names,
            expected,
            from: if plan.expected.is_some() {
                ExpectedFrom::FsIdAndRegion
            } else {
                ExpectedFrom::ServerName
            },
            server_name: plan.server_name.clone(),
            mismatch,
        };
    }
    TlsFailure::NameMismatch {
        server_name: plan.server_name.clone(),
        served_names,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Problem;
    use super::super::test_support::{plan, seen};
    use super::*;

    const FS: &str = "fs-0123456789abcdef0";

    fn classify(
        plan: &Plan,
        seen: &Seen,
        error: Option<io::Error>,
        first: &[u8],
    ) -> Result<Step, Quiet> {
        let addr: SocketAddr = "192.0.2.1:2049".parse().unwrap();
        let failed = FailedHandshake {
            addr,
            error: error.as_ref(),
            first,
        };
        tls_failure(plan, seen, &failed).map(|d| d.step(StepName::Tls, Duration::ZERO))
    }

    fn rustls_error(e: rustls::Error) -> Option<io::Error> {
        Some(io::Error::new(io::ErrorKind::InvalidData, e))
    }

    #[test]
    fn a_peer_that_answers_without_tls_is_named_by_its_bytes() {
        let (plan, seen) = (plan(None), Seen::default());
        let record = efs_rpc::test_util::reply_record(7, efs_rpc::AcceptStat::Success);
        let nfs = classify(&plan, &seen, None, record.wire()).unwrap();
        assert_eq!(nfs.problem, Some(Problem::PlainNfs));
        let http = classify(&plan, &seen, None, b"HTTP/1.1 400 Bad Request\r\n").unwrap();
        assert_eq!(http.problem, Some(Problem::NoTls));
        assert!(
            http.detail
                .contains("\"HTTP/1.1 400 Bad Request\\r\\n\" (26 bytes")
        );
    }

    #[test]
    fn a_quiet_peer_is_left_to_the_plaintext_probe() {
        let (plan, seen) = (plan(None), Seen::default());
        let reset = Some(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
        assert!(matches!(
            classify(&plan, &seen, reset, b""),
            Err(Quiet::HungUp { .. })
        ));
        assert!(matches!(
            classify(&plan, &seen, None, b""),
            Err(Quiet::Silent { .. })
        ));
        let tls_started = classify(&plan, &seen, None, &[0x16, 0x03, 0x03]).unwrap();
        assert!(tls_started.detail.contains("did not finish within 3s"));
    }

    #[test]
    fn a_name_mismatch_names_the_other_mount_target_or_the_nlb_mistake() {
        use rustls::CertificateError::NotValidForName;
        let name_error = || rustls_error(rustls::Error::InvalidCertificate(NotValidForName));
        let plan = plan(Some((FS, "us-west-2", true)));
        let other_region = seen(
            true,
            Some(FS),
            Some("fs-0123456789abcdef0.s3files.us-east-1.on.aws"),
        );
        let step = classify(&plan, &other_region, name_error(), &[0x16, 3, 3]).unwrap();
        assert_eq!(step.problem, Some(Problem::WrongRegionOrFsId));
        assert!(step.fix.unwrap().starts_with("check --region: it must be"));
        let nlb = seen(true, Some(FS), Some("nlb-1.elb.us-west-2.amazonaws.com"));
        let step = classify(&plan, &nlb, name_error(), &[0x16, 3, 3]).unwrap();
        assert_eq!(step.problem, None);
        assert!(
            step.detail
                .contains("(it names nlb-1.elb.us-west-2.amazonaws.com)")
        );
        assert!(step.fix.unwrap().contains("not the NLB's"));
    }

    #[test]
    fn a_refused_certificate_not_signed_here_is_tls_without_iam() {
        let alert = || {
            rustls_error(rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired,
            ))
        };
        let step = classify(&plan(None), &Seen::default(), alert(), &[0x15, 3, 3]).unwrap();
        assert_eq!(step.problem, Some(Problem::TlsWithoutIam));
        assert!(step.detail.ends_with("none was presented"));
        let signed = plan(Some((FS, "us-east-1", true)));
        let step = classify(&signed, &Seen::default(), alert(), &[0x15, 3, 3]).unwrap();
        assert_eq!(step.problem, None);
    }
}
