//! IAM authentication to EFS and S3 Files mount targets: AWS credentials → SigV4 → a
//! self-signed client certificate, refreshed in the background.
//!
//! A mount target authenticates a client by the certificate it presents in the TLS handshake.
//! efs-utils makes that certificate with openssl (`certificate_utils.py`); this module makes
//! the same certificate in-process, byte for byte for the same inputs (see the known-answer
//! tests in `proxy/tests/iam_vectors.rs`):
//!
//! * [`credentials`]: AWS credentials from `aws-config`'s default chain, bounded in time;
//! * [`sigv4`]: efs-utils' SigV4 "request" (`GET /?Action=Connect&PublicKeyHash=…`), with its
//!   non-standard canonical form;
//! * [`certificate`]: the custom X.509 extensions (`1.3.6.1.4.1.4843.7.1`–`.7.4`) and the
//!   certificate itself, built with rcgen;
//! * [`key`]: the RSA-3072 key, generated with the `rsa` crate (ring cannot generate RSA) or
//!   loaded from a PEM file such as efs-utils' `/etc/amazon/efs/privateKey.pem`;
//! * [`issuer`]: all of the above for one file system, producing a [`ClientIdentity`];
//! * [`refresh`]: a task that replaces the certificate before it or the credentials expire;
//! * [`names`]: the mount target's DNS name and TLS server name, as efs-utils derives them;
//! * [`signing_time`]: the one timestamp that feeds SigV4, the certificate and its validity.
//!
//! Secrets (the secret access key and the session token) never appear in logs or errors:
//! credentials are held in `aws_credential_types::Credentials`, whose `Debug` redacts them,
//! and only the access key id and the signature leave this module.
//!
//! [`ClientIdentity`]: crate::upstream::tls::ClientIdentity

pub mod certificate;
pub mod credentials;
pub mod der;
pub mod issuer;
pub mod key;
pub mod names;
pub mod refresh;
pub mod signing_time;
pub mod sigv4;

use std::time::Duration;

pub use certificate::{Certificate, ClientInfo};
pub use credentials::{CredentialSource, CredentialsError};
pub use issuer::{IamError, Issued, Issuer};
pub use key::{ClientKey, KeyError};
pub use names::{MountTargetName, MountTargetNames, NameError};
pub use refresh::RefreshPolicy;
pub use signing_time::SigningTime;

/// The service a certificate is signed for: the SigV4 service name, and the label in the
/// mount target's DNS name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Amazon S3 Files: signs as `s3files`, names `{az_id}.{fs_id}.s3files.{region}.on.aws`.
    S3Files,
    /// Amazon EFS: signs as `elasticfilesystem`, names `{fs_id}.efs.{region}.amazonaws.com`.
    Efs,
}

impl Service {
    /// The SigV4 service name (efs-utils' `S3FILES_SERVICE_NAME` / `EFS_SERVICE_NAME`).
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::S3Files => "s3files",
            Service::Efs => "elasticfilesystem",
        }
    }

    /// The service label of the mount target's DNS name.
    pub fn dns_label(self) -> &'static str {
        match self {
            Service::S3Files => "s3files",
            Service::Efs => "efs",
        }
    }

    /// Parses `s3files`, `efs` or `elasticfilesystem`.
    pub fn parse(s: &str) -> Option<Service> {
        match s {
            "s3files" => Some(Service::S3Files),
            "efs" | "elasticfilesystem" => Some(Service::Efs),
            _ => None,
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.signing_name())
    }
}

/// efs-utils' certificate validity: it starts 15 minutes before the signing time
/// (`NOT_BEFORE_MINS`), to tolerate clock skew...
pub const DEFAULT_BACKDATE: Duration = Duration::from_secs(15 * 60);
/// ...and ends 3 hours after it (`NOT_AFTER_HOURS`).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3 * 60 * 60);

/// What goes into the certificate of one file system, besides credentials and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSpec {
    /// The file system id (`fs-…`): extension 7.3, and the SigV4 `host`.
    pub fs_id: String,
    /// The file system's region: the SigV4 scope.
    pub region: String,
    /// EFS or S3 Files: the SigV4 service name (`elasticfilesystem` or `s3files`).
    pub service: Service,
    /// The access point id (`fsap-…`): extension 7.1 when present.
    pub access_point: Option<String>,
    /// Subject and issuer common name; efs-utils uses the host name, cut to 64 characters.
    pub common_name: String,
    /// Extension 7.4.
    pub client_info: ClientInfo,
    /// Validity starts this long before the signing time.
    pub backdate: Duration,
    /// Validity ends this long after the signing time.
    pub lifetime: Duration,
}

impl CertificateSpec {
    /// A spec with efs-utils' defaults: this host's name, client info `unknown`/`3.2.0`,
    /// valid from 15 minutes before to 3 hours after signing.
    pub fn new(fs_id: impl Into<String>, region: impl Into<String>, service: Service) -> Self {
        CertificateSpec {
            fs_id: fs_id.into(),
            region: region.into(),
            service,
            access_point: None,
            common_name: default_common_name(),
            client_info: ClientInfo::default(),
            backdate: DEFAULT_BACKDATE,
            lifetime: DEFAULT_LIFETIME,
        }
    }
}

/// This host's name cut to 64 characters (the X.520 upper bound for a common name), as
/// efs-utils' `socket.gethostname()[0:64]`.
pub fn default_common_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_string());
    truncate_common_name(&host)
}

/// Cuts a common name to 64 characters (not bytes, as Python slices).
pub fn truncate_common_name(name: &str) -> String {
    name.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        assert_eq!(Service::S3Files.signing_name(), "s3files");
        assert_eq!(Service::Efs.signing_name(), "elasticfilesystem");
        assert_eq!(Service::parse("elasticfilesystem"), Some(Service::Efs));
        assert_eq!(Service::parse("efs"), Some(Service::Efs));
        assert_eq!(Service::parse("s3"), None);
    }

    #[test]
    fn common_names_are_cut_to_64_characters() {
        let long = "é".repeat(70);
        assert_eq!(truncate_common_name(&long).chars().count(), 64);
        assert_eq!(truncate_common_name("host"), "host");
        let cn = default_common_name();
        assert!(!cn.is_empty() && cn.chars().count() <= 64);
    }
}
