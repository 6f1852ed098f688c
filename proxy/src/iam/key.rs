//! The client certificate's private key: RSA-3072 like efs-utils' `privateKey.pem`.
//!
//! ring (the project's only crypto backend) signs with RSA but cannot generate RSA keys, so a
//! new key comes from the pure-Rust `rsa` crate and is handed to ring as PKCS#8. An existing
//! key is loaded from PEM: PKCS#8 (`BEGIN PRIVATE KEY`, what `openssl genpkey` writes, so
//! efs-utils' `/etc/amazon/efs/privateKey.pem` works as is) or PKCS#1 (`BEGIN RSA PRIVATE
//! KEY`). ECDSA P-256/P-384 PKCS#8 keys load too (handy for fast tests).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{KeyPair, PKCS_RSA_SHA256};
use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use thiserror::Error;
use zeroize::Zeroizing;

/// Size of generated keys, as efs-utils' `rsa_keygen_bits:3072`.
pub const RSA_BITS: usize = 3072;

/// A private key that can sign certificates and TLS handshakes. Its DER is wiped from memory
/// when it is dropped (ring's parsed copy inside the key pair is ring's to manage).
pub struct ClientKey {
    pair: KeyPair,
}

impl Drop for ClientKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.pair);
    }
}

impl zeroize::ZeroizeOnDrop for ClientKey {}

impl std::fmt::Debug for ClientKey {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("algorithm", &self.pair.algorithm())
            .field("public_key_hash", &self.public_key_hash())
            .finish_non_exhaustive()
    }
}

/// The error of the library (`rsa`, `rcgen`, the PEM reader) that refused a key.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A key that cannot be generated, read or written; each message names the file and the fix.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Key generation (or its blocking task) failed.
    #[error("cannot generate an RSA-{RSA_BITS} key: {0}")]
    Generate(#[source] Cause),
    /// The key file cannot be read.
    #[error("cannot read the private key {path}: {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// The key file holds no key this proxy can use; `step` names what refused it (`PEM`,
    /// `PKCS#1`, `SEC1`, `key pair`).
    #[error(
        "{path}: not a usable private key ({step}: {source}); expected PEM PKCS#8 ('BEGIN \
         PRIVATE KEY', as `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072` \
         writes) or PKCS#1 ('BEGIN RSA PRIVATE KEY'), RSA of 2048 bits or more, or ECDSA \
         P-256/P-384"
    )]
    Parse {
        /// The key file.
        path: PathBuf,
        /// The decoding stage that refused it.
        step: &'static str,
        /// That stage's error.
        #[source]
        source: Cause,
    },
    /// The key file cannot be created or written.
    #[error("cannot write the private key {path}: {source}; check the directory and permissions")]
    Write {
        /// The key file.
        path: PathBuf,
        /// The create or write error.
        #[source]
        source: std::io::Error,
    },
}

impl ClientKey {
    /// Generates an RSA-3072 key. CPU-bound (about 0.3–1 s in release builds, much longer
    /// in unoptimized ones): call it from `spawn_blocking` in async code.
    pub fn generate_rsa() -> Result<ClientKey, KeyError> {
        use rsa::Generate;
        use rsa::pkcs8::EncodePrivateKey;
        let started = Instant::now();
        let key = rsa::PrivateKey::try_generate().map_err(|e| KeyError::Generate(e.into()))?;
        let pkcs8 = key
            .to_pkcs8_der()
            .map_err(|e| KeyError::Generate(e.into()))?;
        let pair = KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8.as_bytes()),
            &PKCS_RSA_SHA256,
        )
        .map_err(|e| KeyError::Generate(e.into()))?;
        tracing::debug!(elapsed = ?started.elapsed(), "generated an RSA-{RSA_BITS} key");
        Ok(ClientKey { pair })
    }

    /// Parses a PEM private key; `path` only names the source in errors.
    pub fn from_pem(pem: &[u8], path: &Path) -> Result<ClientKey, KeyError> {
        let parse = |step: &'static str, source: Cause| KeyError::Parse {
            path: path.to_path_buf(),
            step,
            source,
        };
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| parse("PEM", e.into()))?;
        let pkcs8: Zeroizing<Vec<u8>> = Zeroizing::new(match &der {
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
            PrivateKeyDer::Pkcs1(k) => {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                use rsa::pkcs8::EncodePrivateKey;
                let key = rsa::PrivateKey::from_pkcs1_der(k.secret_pkcs1_der())
                    .map_err(|e| parse("PKCS#1", e.into()))?;
                key.to_pkcs8_der()
                    .map_err(|e| parse("PKCS#1 to PKCS#8", e.into()))?
                    .as_bytes()
                    .to_vec()
            }
            _ => {
                return Err(parse(
                    "SEC1",
                    "EC keys in SEC1 form are not supported, convert to PKCS#8".into(),
                ));
            }
        });
        let pkcs8 = PrivatePkcs8KeyDer::from(pkcs8.as_slice());
        // RSA keys get sha256WithRSAEncryption (efs-utils'); anything else its natural scheme.
        let pair = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &PKCS_RSA_SHA256)
            .or_else(|_| KeyPair::try_from(&PrivateKeyDer::Pkcs8(pkcs8.clone_key())))
            .map_err(|e| parse("key pair", e.into()))?;
        Ok(ClientKey { pair })
    }

    /// Loads a PEM private key file, warning when users other than its owner can read it or
    /// its owner is not this process's user (`files::key_file_problem`).
    pub fn load(path: &Path) -> Result<ClientKey, KeyError> {
        let pem = Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?);
        crate::files::warn_about_key_file(path);
        Self::from_pem(&pem, path)
    }

    /// Loads `path`, or, when it does not exist (or is empty, as efs-utils treats a key file
    /// left by a crash), generates an RSA-3072 key and writes it there with mode 0600. Two
    /// processes racing to create the same file agree on one key: the file is created with
    /// `O_EXCL` and the loser loads the winner's key. Returns the key and whether it was
    /// created.
    pub fn load_or_create(path: &Path) -> Result<(ClientKey, bool), KeyError> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.len() > 0 => return Ok((Self::load(path)?, false)),
            Ok(_) => {
                tracing::warn!("{} is empty; replacing it with a new key", path.display());
                std::fs::remove_file(path).map_err(|source| KeyError::Write {
                    path: path.to_path_buf(),
                    source,
                })?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(KeyError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        let key = Self::generate_rsa()?;
        match key.write_new(path) {
            Ok(()) => Ok((key, true)),
            Err(KeyError::Write { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                Ok((Self::load(path)?, false))
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the key as PKCS#8 PEM to a new file with mode 0600 (fails if it exists).
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        let write = |source| KeyError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(write)?;
        let pem = Zeroizing::new(self.pair.serialize_pem());
        file.write_all(pem.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(write)
    }

    /// The rcgen key pair, to sign certificates.
    pub fn key_pair(&self) -> &KeyPair {
        &self.pair
    }

    /// The private key for rustls.
    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pair.serialize_der()))
    }

    /// The subjectPublicKey (for RSA, the DER `RSAPublicKey`).
    pub fn public_key_raw(&self) -> &[u8] {
        self.pair.public_key_raw()
    }

    /// efs-utils' `PublicKeyHash`: lower-case hex SHA-1 of the subjectPublicKey. It is also
    /// the certificate's subjectKeyIdentifier.
    pub fn public_key_hash(&self) -> String {
        hex::encode(self.public_key_sha1())
    }

    /// The SHA-1 of the subjectPublicKey, as raw bytes: the certificate's
    /// subjectKeyIdentifier (2.5.29.14), and hex-encoded the [`public_key_hash`] efs-utils
    /// signs.
    ///
    /// [`public_key_hash`]: Self::public_key_hash
    pub fn public_key_sha1(&self) -> Vec<u8> {
        digest(&SHA1_FOR_LEGACY_USE_ONLY, self.public_key_raw())
            .as_ref()
            .to_vec()
    }
}

/// Generates an RSA-3072 key off the async runtime's worker threads, and reports how long
/// it took (logged by callers: it is the slowest step of a cold start).
pub async fn generate_rsa_blocking() -> Result<(ClientKey, Duration), KeyError> {
    let started = Instant::now();
    let key = tokio::task::spawn_blocking(ClientKey::generate_rsa)
        .await
        .map_err(|e| KeyError::Generate(e.into()))??;
    Ok((key, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ECDSA key made by rcgen (fast), as PEM.
    fn ecdsa_pem() -> String {
        KeyPair::generate().unwrap().serialize_pem()
    }

    #[test]
    fn a_client_key_wipes_its_der_when_dropped() {
        fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        zeroized_on_drop::<ClientKey>();
        // What the Drop impl does, observed on a copy: rcgen's Zeroize empties the DER.
        let mut pair = KeyPair::generate().unwrap();
        assert!(!pair.serialize_der().is_empty());
        zeroize::Zeroize::zeroize(&mut pair);
        assert!(pair.serialize_der().is_empty());
    }

    #[test]
    fn ecdsa_pkcs8_keys_load() {
        let key = ClientKey::from_pem(ecdsa_pem().as_bytes(), Path::new("k.pem")).unwrap();
        assert_eq!(key.public_key_hash().len(), 40);
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn garbage_is_refused_with_the_path_and_the_expected_formats() {
        let err = ClientKey::from_pem(b"not a key", Path::new("/x/key.pem")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/x/key.pem") && text.contains("BEGIN PRIVATE KEY"),
            "{text}"
        );
        // The PEM reader's own error is the cause, and the message quotes it.
        let cause = std::error::Error::source(&err).expect("the PEM reader's error");
        assert!(text.contains(&format!("(PEM: {cause})")), "{text}");
    }

    #[test]
    fn write_new_is_0600_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let key = ClientKey::from_pem(ecdsa_pem().as_bytes(), &path).unwrap();
        key.write_new(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(key.write_new(&path), Err(KeyError::Write { .. })));
        let again = ClientKey::load(&path).unwrap();
        assert_eq!(again.public_key_hash(), key.public_key_hash());
        // load_or_create uses the existing file.
        let (loaded, created) = ClientKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(loaded.public_key_hash(), key.public_key_hash());
    }
}
