//! TLS client settings: trust anchors, the client certificate, and the rustls configuration.
//!
//! The server name used for SNI and certificate verification is separate from the address
//! dialled (see [`crate::upstream::dial`]): an NLB is reached by its own DNS name but presents the
//! mount target's certificate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
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
    pub chain: Vec<CertificateDer<'static>>,
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
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsSetupError::Pem {
            path: key.to_path_buf(),
            what: "private key",
            reason: e.to_string(),
        })?;
        Ok(ClientIdentity {
            chain,
            key: Arc::new(key),
        })
    }
}

/// A TLS setting that cannot be used, naming the file and the fix.
#[derive(Debug, Error)]
pub enum TlsSetupError {
    #[error("cannot read {what} from {path}: {reason}")]
    Pem {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("{path} holds no certificate (expected PEM '-----BEGIN CERTIFICATE-----' blocks)")]
    NoCertificates { path: PathBuf },
    #[error("no usable CA certificate in {path}: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("the system trust store has no usable certificates; pass --ca-file")]
    NoSystemRoots,
    #[error("client certificate and key do not match or are unusable: {0}")]
    ClientAuth(rustls::Error),
    #[error("invalid server name {name:?}: expected a DNS name or IP address")]
    ServerName { name: String },
    #[error("TLS configuration error: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Reads every certificate of a PEM file. Text outside PEM blocks (such as efs-utils' `# `
/// comment lines) is ignored.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsSetupError::Pem {
            path: path.to_path_buf(),
            what: "certificates",
            reason: e.to_string(),
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
    ServerName::try_from(name.to_string()).map_err(|_| TlsSetupError::ServerName {
        name: name.to_string(),
    })
}

/// True in builds with the `fips` feature: TLS runs on aws-lc-rs in FIPS mode.
pub const FIPS: bool = cfg!(feature = "fips");

/// The TLS crypto provider: ring (the project's one crypto backend: aws-lc would double the
/// clean release build on 2 cores), or in `fips` builds aws-lc-rs in FIPS mode, with only
/// FIPS-approved cipher suites and key exchange groups.
pub fn provider() -> Arc<CryptoProvider> {
    #[cfg(feature = "fips")]
    return Arc::new(rustls::crypto::default_fips_provider());
    #[cfg(not(feature = "fips"))]
    Arc::new(rustls::crypto::ring::default_provider())
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
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let roots = match trust {
        Trust::NoVerify => None,
        Trust::CaFile(path) => Some(ca_file_roots(path)?),
        Trust::SystemRoots => Some(system_roots()?),
        Trust::CaFileAndSystemRoots(path) => {
            let mut roots = ca_file_roots(path)?;
            roots
                .roots
                .extend(system_roots().map(|r| r.roots).unwrap_or_default());
            Some(roots)
        }
    };
    let builder = match roots {
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(HandshakeSignatures(
                provider,
            )))),
        Some(roots) if verify_hostname => builder.with_root_certificates(roots),
        Some(roots) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e.to_string())))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
        }
    };
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

fn ca_file_roots(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certificates(path)? {
        roots.add(cert).map_err(|e| TlsSetupError::BadCa {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(TlsSetupError::NoSystemRoots);
    }
    Ok(roots)
}

/// Verifies the chain to the trust anchors but accepts any name on the certificate.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A verifier that accepts any server certificate but still checks the handshake signatures,
/// so the session is encrypted to whoever holds the presented key. Only for `--no-verify`.
#[derive(Debug)]
struct NoVerification(HandshakeSignatures);

/// Checks TLS handshake signatures with a provider's algorithms: the part of certificate
/// verification that every custom verifier of this project keeps, whatever it decides about
/// the certificate itself.
#[derive(Debug, Clone)]
pub struct HandshakeSignatures(pub Arc<CryptoProvider>);

impl HandshakeSignatures {
    pub fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    pub fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    pub fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.schemes()
    }
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
