//! The IAM options shared by `run` and `cert`, and what `run` does with them: derive the
//! mount target's names from `--fs-id`/`--region`/`--service`, make the client certificate at
//! start, and keep it fresh.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use efs_proxy::iam::refresh::RefreshPolicy;
use efs_proxy::iam::{
    CertificateSpec, ClientInfo, ClientKey, CredentialSource, Service, key, names,
};
use efs_proxy::{Auth, IamAuth, ProxyBuilder};
use tracing::info;

use super::target::TargetArgs;

/// `--service`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ServiceArg {
    /// Amazon S3 Files (signs as `s3files`).
    S3files,
    /// Amazon EFS (signs as `elasticfilesystem`).
    #[value(alias = "elasticfilesystem")]
    Efs,
}

impl From<ServiceArg> for Service {
    fn from(s: ServiceArg) -> Service {
        match s {
            ServiceArg::S3files => Service::S3Files,
            ServiceArg::Efs => Service::Efs,
        }
    }
}

/// Certificate contents beyond the file system: the same options for `run` and `cert`.
#[derive(Args, Debug, Default)]
pub(crate) struct CertificateFields {
    /// Access point id (fsap-…), put in the certificate (extension 1.3.6.1.4.1.4843.7.1).
    #[arg(long, value_name = "ID")]
    pub access_point: Option<String>,
    /// Subject common name [default: this host's name, cut to 64 characters].
    #[arg(long, value_name = "NAME")]
    pub common_name: Option<String>,
    /// Client information "source" (efs-utils' [client-info] source).
    #[arg(long, value_name = "S", default_value = "unknown")]
    pub client_source: String,
    /// Client information version (efs-utils' version string).
    #[arg(long, value_name = "V", default_value = "3.2.0")]
    pub client_version: String,
    /// AWS profile for credentials (only this profile is used); default: the standard chain
    /// (environment, ~/.aws files with AWS_PROFILE, web identity, ECS/EKS container
    /// credentials, EC2 instance metadata).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Seconds allowed for finding credentials.
    #[arg(long, value_name = "SECS", default_value_t = 5, hide = true)]
    pub credentials_timeout: u64,
}

impl CertificateFields {
    /// The certificate spec for a file system.
    pub(crate) fn spec(
        &self,
        fs_id: &str,
        region: &str,
        service: Service,
    ) -> anyhow::Result<CertificateSpec> {
        names::check_fs_id(fs_id)?;
        names::check_region(region)?;
        let mut spec = CertificateSpec::new(fs_id, region, service);
        if let Some(ap) = &self.access_point {
            names::check_access_point(ap)?;
            spec.access_point = Some(ap.clone());
        }
        if let Some(cn) = &self.common_name {
            if cn.is_empty() {
                bail!("--common-name must not be empty");
            }
            spec.common_name = efs_proxy::iam::truncate_common_name(cn);
        }
        let len = self.client_source.chars().count();
        if !(1..=100).contains(&len) {
            bail!("--client-source must be 1 to 100 characters (efs-utils' limit), not {len}");
        }
        spec.client_info = ClientInfo {
            source: self.client_source.clone(),
            version: self.client_version.clone(),
        };
        Ok(spec)
    }

    fn is_customized(&self) -> bool {
        self.access_point.is_some()
            || self.common_name.is_some()
            || self.profile.is_some()
            || self.client_source != "unknown"
            || self.client_version != "3.2.0"
    }

    pub(crate) fn credentials_timeout(&self) -> Duration {
        Duration::from_secs(self.credentials_timeout)
    }
}

/// The IAM options of `efs-proxy run`.
#[derive(Args, Debug)]
pub(crate) struct IamRunArgs {
    /// File system id (fs-…). The proxy then derives the mount target's address and server
    /// name (unless --target/--server-name are given) and makes its own client certificate,
    /// signed with AWS credentials and refreshed while it runs (unless --cert is given).
    #[arg(long, value_name = "ID", requires_all = ["region", "service"])]
    pub fs_id: Option<String>,
    /// Region of the file system (e.g. us-east-1).
    #[arg(long, value_name = "REGION", requires = "fs_id")]
    pub region: Option<String>,
    /// Service of the file system: s3files or efs.
    #[arg(long, value_enum, requires = "fs_id")]
    pub service: Option<ServiceArg>,
    /// Availability zone prefix of the mount target's DNS name: the AZ ID (e.g. use1-az1),
    /// required to derive an S3 Files address; optional for EFS (as efs-utils' -o az=).
    #[arg(long, value_name = "AZ", requires = "fs_id")]
    pub az_id: Option<String>,
    /// DNS suffix of the mount target's names [default: by partition, e.g. on.aws for S3
    /// Files and amazonaws.com for EFS, amazonaws.com.cn in China].
    #[arg(long, value_name = "SUFFIX", requires = "fs_id")]
    pub dns_suffix: Option<String>,
    /// Make a certificate without the IAM signature (efs-utils' TLS mounts without `iam`):
    /// no credentials are needed.
    #[arg(long, requires = "fs_id", conflicts_with = "cert")]
    pub no_iam: bool,
    #[command(flatten)]
    pub fields: CertificateFields,
    /// Certificate validity after signing, in seconds (efs-utils: 3 hours).
    #[arg(long, value_name = "SECS", hide = true)]
    pub cert_lifetime: Option<u64>,
    /// Refresh this many seconds before the certificate expires (default: 2 hours).
    #[arg(long, value_name = "SECS", hide = true)]
    pub cert_refresh_margin: Option<u64>,
    /// Refresh this many seconds before the credentials expire (default: 5 minutes).
    #[arg(long, value_name = "SECS", hide = true)]
    pub credentials_refresh_margin: Option<u64>,
    /// Minimum milliseconds between refresh attempts, and the first retry delay after a
    /// failure (defaults: 10 s and 5 s).
    #[arg(long, value_name = "MS", hide = true)]
    pub cert_retry_ms: Option<u64>,
}

impl IamRunArgs {
    fn policy(&self) -> RefreshPolicy {
        let mut policy = RefreshPolicy::default();
        if let Some(s) = self.cert_refresh_margin {
            policy.certificate_margin = Duration::from_secs(s);
        }
        if let Some(s) = self.credentials_refresh_margin {
            policy.credentials_margin = Duration::from_secs(s);
        }
        if let Some(ms) = self.cert_retry_ms {
            policy.min_interval = Duration::from_millis(ms);
            policy.retry_initial = Duration::from_millis(ms);
        }
        policy
    }
}

/// What `run` connects to and with which certificate.
pub(crate) struct RunPlan {
    pub target: String,
    pub server_name: String,
    /// The certificate the proxy makes and keeps fresh; `None` with `--cert` or without
    /// `--fs-id`.
    pub iam: Option<IamAuth>,
}

/// A proxy builder with everything the server options and the IAM options say: where to
/// connect, the name to verify, which certificates to trust, how to authenticate and the
/// connect and bind timeouts. `run` and the mount daemon add where to listen.
pub(crate) async fn builder(iam: &IamRunArgs, server: TargetArgs) -> anyhow::Result<ProxyBuilder> {
    let trust = server.trust();
    let plan = plan(
        iam,
        server.target,
        server.server_name,
        server.cert.as_deref(),
        server.key.as_deref(),
    )
    .await?;
    let auth = match (plan.iam, server.cert, server.key) {
        (Some(iam), _, _) => Auth::Iam(iam),
        (None, Some(cert), Some(key)) => Auth::CertificateFiles { cert, key },
        _ => Auth::None,
    };
    Ok(ProxyBuilder::new(plan.target)
        .server_name(plan.server_name)
        .trust(trust)
        .auth(auth)
        .connect_timeout(Duration::from_secs(server.connect_timeout))
        .bind_timeout(Duration::from_secs(server.bind_timeout)))
}

/// Resolves `run`'s target, server name and certificate source.
pub(crate) async fn plan(
    iam: &IamRunArgs,
    target: Option<String>,
    server_name: Option<String>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> anyhow::Result<RunPlan> {
    let Some(fs_id) = &iam.fs_id else {
        if key.is_some() && cert.is_none() {
            bail!(
                "--key needs --cert (the certificate for that key) or --fs-id (the proxy then \
                 makes a certificate for the key)"
            );
        }
        // clap requires --target and --server-name without --fs-id.
        let (Some(target), Some(server_name)) = (target, server_name) else {
            bail!("--target and --server-name are required without --fs-id");
        };
        return Ok(RunPlan {
            target,
            server_name,
            iam: None,
        });
    };
    let (Some(region), Some(service)) = (&iam.region, iam.service) else {
        bail!("--fs-id needs --region and --service");
    };
    let service = Service::from(service);
    let derived = names::mount_target_names(
        service,
        fs_id,
        region,
        iam.az_id.as_deref(),
        iam.dns_suffix.as_deref(),
    )?;
    let target = match (target, derived.target()) {
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => bail!(
            "S3 Files mount targets are per availability zone: pass --az-id (e.g. use1-az1) \
             to connect to {{az_id}}.{}:2049, or --target HOST:PORT (e.g. the NLB's address)",
            derived.server_name
        ),
    };
    let server_name = server_name.unwrap_or(derived.server_name);

    if let Some(cert) = cert {
        if iam.fields.is_customized() {
            bail!(
                "--access-point, --common-name, --client-source, --client-version and --profile \
                 describe the certificate the proxy makes; with --cert {} the given certificate \
                 is used as is",
                cert.display()
            );
        }
        return Ok(RunPlan {
            target,
            server_name,
            iam: None,
        });
    }

    let mut spec = iam.fields.spec(fs_id, region, service)?;
    if let Some(secs) = iam.cert_lifetime {
        spec.lifetime = Duration::from_secs(secs);
    }
    let mut auth = IamAuth::new(fs_id.clone(), region.clone(), service)
        .spec(spec)
        .key(load_key(key).await?)
        .refresh_policy(iam.policy());
    auth = if iam.no_iam {
        auth.unsigned()
    } else {
        auth.credentials(CredentialSource::new(
            region,
            iam.fields.profile.as_deref(),
            iam.fields.credentials_timeout(),
        ))
    };
    Ok(RunPlan {
        target,
        server_name,
        iam: Some(auth),
    })
}

/// Loads `--key` (creating it, mode 0600, when the file does not exist), or generates a key
/// kept in memory only.
pub(crate) async fn load_key(path: Option<&Path>) -> anyhow::Result<ClientKey> {
    match path {
        Some(path) => {
            let owned: PathBuf = path.to_path_buf();
            let (key, created) =
                tokio::task::spawn_blocking(move || ClientKey::load_or_create(&owned))
                    .await
                    .context("the key task failed")??;
            if created {
                info!(
                    "generated an RSA-{} key in {} (mode 0600)",
                    key::RSA_BITS,
                    path.display()
                );
            }
            Ok(key)
        }
        None => {
            let (key, elapsed) = key::generate_rsa_blocking().await?;
            info!(
                "generated an RSA-{} key in memory in {:.2} s",
                key::RSA_BITS,
                elapsed.as_secs_f64()
            );
            Ok(key)
        }
    }
}
