//! TLS client settings: trust anchors, the client certificate, the one server certificate
//! verifier, and the rustls configuration. The proxy and `efs-proxy check` both build their
//! configuration here, so `check` verifies a server exactly as the proxy would.
//!
//! The server name used for SNI and certificate verification is separate from the address
//! dialled (see [`crate::upstream::dial`]): an NLB is reached by its own DNS name but presents the
//! mount target's certificate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{VerifierBuilderError, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, InvalidDnsNameError, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use thiserror::Error;

/// Which server certificates to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The operating system's trust store.
    SystemRoots,
    /// The CA certificates of a PEM file (AWS's `efs-utils.crt`, or a test CA).
    CaFile(PathBuf),
    /// A CA file and the system trust store together: what AWS's efs-proxy trusts when its
    /// config names a `CAfile` (s2n loads the system store as well).
    CaFileAndSystemRoots(PathBuf),
    /// No verification at all: chain and name are not checked. For testing only; logged loudly.
    NoVerify,
}

/// The client certificate and its private key.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The certificates presented, leaf first (an IAM certificate is a single self-signed
    /// one).
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key of the leaf, shared rather than copied between configurations.
    pub key: Arc<PrivateKeyDer<'static>>,
}

impl std::fmt::Debug for ClientIdentity {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// When the leaf certificate expires, if it can be read.
    pub fn not_after(&self) -> Option<std::time::SystemTime> {
        let (_, cert) = x509_parser::parse_x509_certificate(self.chain.first()?).ok()?;
        let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
    }

    /// Loads a certificate chain and a private key from PEM files, warning when the key file
    /// is readable by other users or owned by another user ([`crate::files::key_file_problem`]).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsSetupError> {
        let chain = load_certificates(cert)?;
        crate::files::warn_about_key_file(key);
        let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsSetupError::Pem {
            path: key.to_path_buf(),
            what: "private key",
            source,
        })?;
        Ok(ClientIdentity {
            chain,
            key: Arc::new(key),
        })
    }
}

/// A TLS setting that cannot be used, naming the file and the fix.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// A PEM file (certificates or private key) cannot be read or parsed.
    #[error("cannot read {what} from {path}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was expected in it: `"certificates"` or `"private key"`.
        what: &'static str,
        /// The read or PEM parse error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM file without a single certificate.
    #[error("{path} holds no certificate (expected PEM '-----BEGIN CERTIFICATE-----' blocks)")]
    NoCertificates {
        /// The file.
        path: PathBuf,
    },
    /// A certificate of the CA file that cannot be a trust anchor.
    #[error("no usable CA certificate in {path}: {source}")]
    BadCa {
        /// The CA file.
        path: PathBuf,
        /// Why rustls refused its certificates as trust anchors.
        #[source]
        source: rustls::Error,
    },
    /// The system trust store is empty or unreadable, and nothing else was given to trust.
    #[error("the system trust store has no usable certificates; pass --ca-file")]
    NoSystemRoots,
    /// The trust anchors cannot make a certificate verifier.
    #[error("cannot use the trust anchors: {0}")]
    Verifier(#[source] VerifierBuilderError),
    /// The client certificate and key do not belong together (or rustls cannot use them).
    #[error("client certificate and key do not match or are unusable: {0}")]
    ClientAuth(#[source] rustls::Error),
    /// A server name that is neither a DNS name nor an IP address.
    #[error("invalid server name {name:?}: expected a DNS name or IP address")]
    ServerName {
        /// The name as given.
        name: String,
        /// Why it is not a valid DNS name.
        #[source]
        source: InvalidDnsNameError,
    },
    /// Any other refusal of rustls to build the configuration.
    #[error("TLS configuration error: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Reads every certificate of a PEM file. Text outside PEM blocks (such as efs-utils' `# `
/// comment lines) is ignored.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsSetupError::Pem {
            path: path.to_path_buf(),
            what: "certificates",
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificates {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Parses a server name for SNI and verification.
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsSetupError> {
    ServerName::try_from(name.to_string()).map_err(|source| TlsSetupError::ServerName {
        name: name.to_string(),
        source,
    })
}

/// True in builds with the `fips` feature: TLS runs on aws-lc-rs in FIPS mode.
pub const FIPS: bool = cfg!(feature = "fips");

/// The TLS crypto provider: ring (the project's one crypto backend: aws-lc would double the
/// clean release build on 2 cores), or in `fips` builds aws-lc-rs in FIPS mode, with only
/// FIPS-approved cipher suites and key exchange groups.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    #[cfg(feature = "fips")]
    return Arc::new(rustls::crypto::default_fips_provider());
    #[cfg(not(feature = "fips"))]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The trust anchors a [`Trust`] names, loaded: what the proxy and `check` verify servers
/// against. [`Trust::NoVerify`] loads none.
///
/// One loader for both, so they cannot disagree. The decision for
/// [`Trust::CaFileAndSystemRoots`]: the CA file's certificates *and* whatever the system store
/// holds, with a system store that is empty or unreadable leaving the CA file alone rather than
/// failing. The CA file was named explicitly and is enough to verify a mount target (AWS's
/// `efs-utils.crt`); the system store beside it is what AWS's efs-proxy adds when its config
/// names a `CAfile` (s2n loads both), not something the user asked for. [`Trust::SystemRoots`]
/// alone with an empty store is an error ([`TlsSetupError::NoSystemRoots`]): nothing would be
/// trusted.
#[derive(Debug, Clone)]
pub struct TrustAnchors {
    roots: Option<Arc<RootCertStore>>,
    /// The CA file and how many trust anchors it gave.
    pub ca_file: Option<(PathBuf, usize)>,
    /// How many trust anchors the system store gave, when it was asked.
    pub system: Option<usize>,
}

impl TrustAnchors {
    /// Loads the anchors of `trust` (the system store from the operating system).
    pub fn load(trust: &Trust) -> Result<Self, TlsSetupError> {
        Self::load_with(trust, || rustls_native_certs::load_native_certs().certs)
    }

    /// [`load`](Self::load), with the system store's certificates from `system`.
    fn load_with(
        trust: &Trust,
        system: impl FnOnce() -> Vec<CertificateDer<'static>>,
    ) -> Result<Self, TlsSetupError> {
        let mut anchors = TrustAnchors {
            roots: None,
            ca_file: None,
            system: None,
        };
        let mut roots = RootCertStore::empty();
        let (ca_file, with_system) = match trust {
            Trust::NoVerify => return Ok(anchors),
            Trust::CaFile(path) => (Some(path), false),
            Trust::CaFileAndSystemRoots(path) => (Some(path), true),
            Trust::SystemRoots => (None, true),
        };
        if let Some(path) = ca_file {
            for cert in load_certificates(path)? {
                roots.add(cert).map_err(|source| TlsSetupError::BadCa {
                    path: path.to_path_buf(),
                    source,
                })?;
            }
            anchors.ca_file = Some((path.to_path_buf(), roots.len()));
        }
        if with_system {
            let (added, _) = roots.add_parsable_certificates(system());
            if roots.is_empty() {
                return Err(TlsSetupError::NoSystemRoots);
            }
            anchors.system = Some(added);
        }
        anchors.roots = Some(Arc::new(roots));
        Ok(anchors)
    }

    /// False for [`Trust::NoVerify`]: no server certificate is checked.
    pub fn verifies(&self) -> bool {
        self.roots.is_some()
    }
}

/// Which names the server certificate may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NamePolicy {
    /// The server name (SNI) must be on the certificate.
    Verify,
    /// Any name: the chain is still verified (efs-utils' empty `checkHost`).
    AnyName,
}

/// The one server certificate verifier of this project: the chain to the [`TrustAnchors`]
/// (nothing at all without anchors, for `--no-verify`), the name as [`NamePolicy`] says, and
/// always the handshake signatures, so the session is encrypted to whoever holds the presented
/// key. When [`recording`](Self::recording), it also keeps the chain the server showed, for
/// `check`'s report.
#[derive(Debug)]
pub(crate) struct ServerVerifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    names: NamePolicy,
    signatures: HandshakeSignatures,
    shown: Option<Mutex<Vec<CertificateDer<'static>>>>,
}

impl ServerVerifier {
    /// A verifier against `anchors`, with this crate's crypto provider.
    pub(crate) fn new(anchors: &TrustAnchors, names: NamePolicy) -> Result<Self, TlsSetupError> {
        let provider = provider();
        let webpki = match &anchors.roots {
            None => None,
            Some(roots) => Some(
                WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .build()
                    .map_err(TlsSetupError::Verifier)?,
            ),
        };
        Ok(ServerVerifier {
            webpki,
            names,
            signatures: HandshakeSignatures(provider),
            shown: None,
        })
    }

    /// Keeps the chain of every server certificate checked (the last one is kept).
    #[cfg(any(feature = "cli", test))]
    pub(crate) fn recording(mut self) -> Self {
        self.shown = Some(Mutex::default());
        self
    }

    /// The chain the server showed last (end entity first); empty when not recording.
    #[cfg(any(feature = "cli", test))]
    pub(crate) fn take_shown_chain(&self) -> Vec<CertificateDer<'static>> {
        self.shown.as_ref().map_or_else(Vec::new, |shown| {
            std::mem::take(&mut *shown.lock().unwrap_or_else(|e| e.into_inner()))
        })
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        if let Some(shown) = &self.shown {
            let mut chain = vec![end_entity.clone().into_owned()];
            chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
            *shown.lock().unwrap_or_else(|e| e.into_inner()) = chain;
        }
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) if self.names == NamePolicy::AnyName => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.schemes()
    }
}

/// Checks TLS handshake signatures with a provider's algorithms: the part of certificate
/// verification that the verifier keeps whatever it decides about the certificate itself.
#[derive(Debug, Clone)]
pub struct HandshakeSignatures(pub Arc<CryptoProvider>);

impl HandshakeSignatures {
    /// Verifies the signature of a TLS 1.2 ServerKeyExchange (or CertificateVerify) made by
    /// `cert`'s key over `message`.
    pub fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    /// Verifies a TLS 1.3 CertificateVerify signature made by `cert`'s key over `message`.
    pub fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    /// The signature schemes the provider can verify, offered in the ClientHello's
    /// `signature_algorithms` extension.
    pub fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Builds the rustls client configuration (TLS 1.2 and 1.3, as efs-proxy's s2n policy).
///
/// `verify_hostname: false` still verifies the chain but accepts any name on the certificate
/// (efs-utils' empty `checkHost`).
pub fn client_config(
    trust: &Trust,
    verify_hostname: bool,
    identity: Option<&ClientIdentity>,
) -> Result<ClientConfig, TlsSetupError> {
    let names = if verify_hostname {
        NamePolicy::Verify
    } else {
        NamePolicy::AnyName
    };
    let verifier = ServerVerifier::new(&TrustAnchors::load(trust)?, names)?;
    config_with(Arc::new(verifier), identity)
}

/// The rustls client configuration around `verifier`, presenting `identity` when given.
pub(crate) fn config_with(
    verifier: Arc<ServerVerifier>,
    identity: Option<&ClientIdentity>,
) -> Result<ClientConfig, TlsSetupError> {
    let builder = ClientConfig::builder_with_provider(verifier.signatures.0.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(TlsSetupError::ClientAuth)?,
        None => builder.with_no_client_auth(),
    };
    // NFS is a long-lived stream of small and large records; resumption buys nothing on a
    // connection that lives for hours, but costs nothing either, so keep rustls' defaults.
    config.enable_sni = true;
    if FIPS && !config.fips() {
        return Err(TlsSetupError::Rustls(rustls::Error::General(
            "this fips build made a TLS configuration that is not in FIPS mode".into(),
        )));
    }
    Ok(config)
}

/// The TLS configuration in use, replaceable while the proxy runs (certificate refresh and
/// SIGHUP reload): new connections take the current one, open connections keep theirs.
#[derive(Clone)]
pub struct TlsConfigHandle(Arc<RwLock<Arc<ClientConfig>>>);

impl TlsConfigHandle {
    pub fn new(config: ClientConfig) -> Self {
        TlsConfigHandle(Arc::new(RwLock::new(Arc::new(config))))
    }

    /// The configuration new connections should use.
    pub fn current(&self) -> Arc<ClientConfig> {
        // A poisoned lock only means a writer panicked mid-swap of an `Arc`: the value is whole.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the configuration for connections opened from now on.
    pub fn replace(&self, config: ClientConfig) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(name: &str) -> rcgen::Certificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap()
    }

    /// A CA file with one certificate.
    fn ca_file(dir: &tempfile::TempDir) -> PathBuf {
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, certificate("ca.test").pem()).unwrap();
        path
    }

    #[test]
    fn a_ca_file_with_the_system_store_trusts_both_and_needs_only_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let both = Trust::CaFileAndSystemRoots(ca_file(&dir));
        let system = || vec![certificate("system-1.test").der().clone()];
        let anchors = TrustAnchors::load_with(&both, system).unwrap();
        assert_eq!(anchors.ca_file.as_ref().map(|(_, n)| *n), Some(1));
        assert_eq!(anchors.system, Some(1));
        assert_eq!(anchors.roots.as_ref().unwrap().len(), 2);
        // An empty (or unreadable) system store leaves the CA file alone.
        let anchors = TrustAnchors::load_with(&both, Vec::new).unwrap();
        assert_eq!((anchors.system, anchors.roots.unwrap().len()), (Some(0), 1));
    }

    #[test]
    fn each_trust_loads_only_what_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let system = || vec![certificate("system-1.test").der().clone()];
        let ca_only = TrustAnchors::load_with(&Trust::CaFile(ca_file(&dir)), system).unwrap();
        assert_eq!((ca_only.system, ca_only.roots.unwrap().len()), (None, 1));
        let system_only = TrustAnchors::load_with(&Trust::SystemRoots, system).unwrap();
        assert_eq!(system_only.ca_file, None);
        assert_eq!(system_only.roots.unwrap().len(), 1);
        let none = TrustAnchors::load_with(&Trust::NoVerify, system).unwrap();
        assert!(!none.verifies());
        let empty = TrustAnchors::load_with(&Trust::SystemRoots, Vec::new);
        assert!(
            matches!(empty, Err(TlsSetupError::NoSystemRoots)),
            "{empty:?}"
        );
    }

    #[test]
    fn pem_errors_keep_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = load_certificates(&missing).unwrap_err();
        assert!(matches!(err, TlsSetupError::Pem { .. }), "{err:?}");
        assert!(std::error::Error::source(&err).is_some());
        let err = server_name("not a name").unwrap_err();
        assert!(std::error::Error::source(&err).is_some(), "{err:?}");
    }

    #[test]
    fn only_a_recording_verifier_keeps_the_chain() {
        let anchors = TrustAnchors::load_with(&Trust::NoVerify, Vec::new).unwrap();
        let cert = certificate("fs-1.efs.us-east-1.amazonaws.com")
            .der()
            .clone();
        let name = server_name("fs-1.efs.us-east-1.amazonaws.com").unwrap();
        for recording in [false, true] {
            let mut verifier = ServerVerifier::new(&anchors, NamePolicy::Verify).unwrap();
            if recording {
                verifier = verifier.recording();
            }
            let now = UnixTime::now();
            assert!(
                verifier
                    .verify_server_cert(&cert, &[], &name, &[], now)
                    .is_ok()
            );
            let shown = verifier.take_shown_chain();
            assert_eq!(shown.len(), usize::from(recording));
        }
    }
}
