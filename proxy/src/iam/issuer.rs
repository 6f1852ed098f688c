//! Issues client certificates for one file system: credentials, then SigV4, then the
//! certificate, ready for rustls.

use std::sync::Arc;
use std::time::SystemTime;

use thiserror::Error;

use super::CertificateSpec;
use super::certificate::{self, Certificate};
use super::credentials::{CredentialSource, CredentialsError, SourcedCredentials};
use super::key::{ClientKey, KeyError};
use super::names::NameError;
use super::signing_time::SigningTime;
use crate::upstream::tls::ClientIdentity;

/// Why a certificate could not be made.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IamError {
    /// No AWS credentials to sign with.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The private key cannot be generated, read or written.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The file system id, region or access point id is not valid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// rcgen refused to build or sign the certificate.
    #[error("cannot build the client certificate: {0}")]
    Certificate(#[source] rcgen::Error),
    /// The provider returned credentials with an empty key id or secret.
    #[error(
        "the credentials from {provider} have no secret access key or access key id; check \
         that source's configuration"
    )]
    EmptyCredentials {
        /// The credential provider that returned them.
        provider: &'static str,
    },
}

/// A certificate ready to present, and what it was made from.
#[derive(Clone)]
pub struct Issued {
    /// The certificate made, with its validity.
    pub certificate: Certificate,
    /// The same certificate with the issuer's key, ready for a rustls client configuration.
    pub identity: ClientIdentity,
    /// When the credentials that signed it expire (`None`: long-term keys, or no IAM).
    pub credentials_expiry: Option<SystemTime>,
    /// The access key id in the certificate (`None` without IAM). Not a secret.
    pub access_key_id: Option<String>,
    /// Which credential provider supplied the credentials.
    pub credentials_source: Option<&'static str>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("certificate", &self.certificate)
            .field("credentials_expiry", &self.credentials_expiry)
            .field("access_key_id", &self.access_key_id)
            .field("credentials_source", &self.credentials_source)
            .finish_non_exhaustive()
    }
}

/// Makes certificates for one file system with one key.
#[derive(Debug)]
pub struct Issuer {
    spec: CertificateSpec,
    key: Arc<ClientKey>,
    /// `None`: certificates without the SigV4 block (efs-utils' TLS mounts without `iam`).
    credentials: Option<CredentialSource>,
}

impl Issuer {
    /// An issuer for `spec` with `key`; `credentials` signs each certificate (SigV4 block),
    /// `None` makes certificates without it.
    pub fn new(
        spec: CertificateSpec,
        key: ClientKey,
        credentials: Option<CredentialSource>,
    ) -> Self {
        Issuer {
            spec,
            key: Arc::new(key),
            credentials,
        }
    }

    /// What every certificate is made for.
    pub fn spec(&self) -> &CertificateSpec {
        &self.spec
    }

    /// The key every certificate is made with (one key for the issuer's lifetime, as
    /// efs-utils keeps one private key per host).
    pub fn key(&self) -> &ClientKey {
        &self.key
    }

    /// True when certificates carry a SigV4 signature.
    pub fn uses_iam(&self) -> bool {
        self.credentials.is_some()
    }

    /// Fetches credentials (when IAM is on) and makes a certificate signed now.
    pub async fn issue(&self) -> Result<Issued, IamError> {
        let credentials = match &self.credentials {
            Some(source) => Some(source.fetch().await?),
            None => None,
        };
        self.issue_with(credentials.as_ref(), SigningTime::now())
    }

    /// Makes a certificate from given credentials at a given time.
    pub fn issue_with(
        &self,
        credentials: Option<&SourcedCredentials>,
        time: SigningTime,
    ) -> Result<Issued, IamError> {
        let signed = match credentials {
            Some(c) => {
                let creds = &c.credentials;
                if creds.access_key_id().is_empty() || creds.secret_access_key().is_empty() {
                    return Err(IamError::EmptyCredentials { provider: c.source });
                }
                Some(certificate::sign(
                    &self.key,
                    &self.spec,
                    time,
                    creds.access_key_id(),
                    creds.secret_access_key(),
                    creds.session_token(),
                ))
            }
            None => None,
        };
        let certificate = certificate::build(
            &self.key,
            &self.spec,
            time,
            signed.as_ref().map(|s| &s.block),
        )
        .map_err(IamError::Certificate)?;
        let identity = ClientIdentity {
            chain: vec![certificate.der.clone()],
            key: Arc::new(self.key.private_key_der()),
        };
        Ok(Issued {
            certificate,
            identity,
            credentials_expiry: credentials.and_then(|c| c.credentials.expiry()),
            access_key_id: credentials.map(|c| c.credentials.access_key_id().to_string()),
            credentials_source: credentials.map(|c| c.source),
        })
    }
}
