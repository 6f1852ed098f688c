//! A throw-away PKI for tests: a CA, a server certificate for the mount target's names, and a
//! self-signed client certificate (the shape of an IAM certificate, without the extensions).
//!
//! Keys are ECDSA P-256: ring can generate them in microseconds (it cannot generate RSA).

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The server name tests use for the fake mount target (an S3 Files-shaped name).
pub const SERVER_NAME: &str = "fs-0123456789abcdef0.s3files.us-east-1.on.aws";

/// A certificate and its private key, as DER and PEM.
pub struct CertifiedKey {
    pub cert_der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_der: Vec<u8>,
    pub key_pem: String,
}

impl CertifiedKey {
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// A CA with one server certificate and one client certificate.
pub struct TestPki {
    pub ca: CertifiedKey,
    pub server: CertifiedKey,
    pub client: CertifiedKey,
}

/// Where [`TestPki::write`] put the PEM files.
#[derive(Debug, Clone)]
pub struct PkiFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestPki {
    /// A PKI whose server certificate names `server_names` (DNS names or IP addresses).
    pub fn generate(server_names: &[&str]) -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        // A unique name, so two test PKIs never look like the same issuer.
        let serial: u64 = rand::random();
        ca_params.distinguished_name = name(&format!("efs-proxy test CA {serial:016x}"));
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = certified(ca_cert, &ca_key);
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate()?;
        let names: Vec<String> = server_names.iter().map(|s| s.to_string()).collect();
        let mut server_params = CertificateParams::new(names)?;
        server_params.distinguished_name = name(server_names.first().copied().unwrap_or("server"));
        let server_cert = server_params.signed_by(&server_key, &issuer)?;
        let server = certified(server_cert, &server_key);

        let client_key = KeyPair::generate()?;
        let mut client_params = CertificateParams::new(Vec::<String>::new())?;
        client_params.distinguished_name = name("client-host.example");
        let client_cert = client_params.self_signed(&client_key)?;
        let client = certified(client_cert, &client_key);

        Ok(TestPki { ca, server, client })
    }

    /// Writes every PEM file into `dir` (keys with mode 0600).
    pub fn write(&self, dir: &Path) -> anyhow::Result<PkiFiles> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = PkiFiles {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        };
        write_file(&files.ca, &self.ca.cert_pem, 0o644)?;
        write_file(&files.server_cert, &self.server.cert_pem, 0o644)?;
        write_file(&files.server_key, &self.server.key_pem, 0o600)?;
        write_file(&files.client_cert, &self.client.cert_pem, 0o644)?;
        write_file(&files.client_key, &self.client.key_pem, 0o600)?;
        Ok(files)
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn certified(cert: rcgen::Certificate, key: &KeyPair) -> CertifiedKey {
    CertifiedKey {
        cert_der: cert.der().clone(),
        cert_pem: cert.pem(),
        key_der: key.serialize_der(),
        key_pem: key.serialize_pem(),
    }
}

fn write_file(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}
