//! `efs-proxy cert`: make one client certificate, as efs-utils' mount helper would, and
//! write it to a file. For checking a setup by hand, for tools that want the PEM, and for
//! comparing with efs-utils (`--time`, `--explain`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use efs_proxy::iam::refresh::describe;
use efs_proxy::iam::{CredentialSource, Issuer, Service, SigningTime, certificate};

use super::iam::{CertificateFields, ServiceArg, load_key};

#[derive(Args)]
pub(crate) struct CertArgs {
    /// File system id (fs-…): extension 1.3.6.1.4.1.4843.7.3 and the SigV4 host.
    #[arg(long, value_name = "ID")]
    fs_id: String,
    /// Region of the file system (e.g. us-east-1): the SigV4 scope.
    #[arg(long, value_name = "REGION")]
    region: String,
    /// Service of the file system: s3files or efs.
    #[arg(long, value_enum)]
    service: ServiceArg,
    /// Private key (PEM, PKCS#8 or PKCS#1); created (RSA-3072, mode 0600) if the file does
    /// not exist, as efs-utils creates /etc/amazon/efs/privateKey.pem.
    #[arg(long, value_name = "KEY.pem")]
    key: PathBuf,
    /// Where to write the certificate (PEM, mode 0600: it holds the session token).
    #[arg(long, value_name = "CERT.pem")]
    out: PathBuf,
    /// Signing time, RFC 3339 (e.g. 2026-04-15T12:34:56Z) [default: now]. The certificate is
    /// valid from 15 minutes before it to 3 hours after it.
    #[arg(long, value_name = "RFC3339")]
    time: Option<String>,
    #[command(flatten)]
    fields: CertificateFields,
    /// Make the certificate without the IAM signature: no credentials needed.
    #[arg(long, conflicts_with = "profile")]
    no_iam: bool,
    /// Print the canonical request, the string to sign and the signature. The session token
    /// is shown redacted; the secret access key is never printed.
    #[arg(long, conflicts_with = "no_iam")]
    explain: bool,
    /// Certificate validity after signing, in seconds (efs-utils: 3 hours).
    #[arg(long, value_name = "SECS", hide = true)]
    cert_lifetime: Option<u64>,
}

pub(crate) async fn run(args: CertArgs) -> anyhow::Result<()> {
    let service = Service::from(args.service);
    let mut spec = args.fields.spec(&args.fs_id, &args.region, service)?;
    if let Some(secs) = args.cert_lifetime {
        spec.lifetime = std::time::Duration::from_secs(secs);
    }
    let time = match &args.time {
        Some(t) => SigningTime::parse_rfc3339(t).map_err(|e| anyhow::anyhow!("--time {e}"))?,
        None => SigningTime::now(),
    };
    let key = load_key(Some(&args.key)).await?;
    let credentials = if args.no_iam {
        None
    } else {
        let source = CredentialSource::new(
            &args.region,
            args.fields.profile.as_deref(),
            args.fields.credentials_timeout(),
        );
        Some(source.fetch().await?)
    };
    let issuer = Issuer::new(spec, key, None);
    let issued = issuer.issue_with(credentials.as_ref(), time)?;

    let mut out = std::io::stdout().lock();
    if let (true, Some(c)) = (args.explain, &credentials) {
        let creds = &c.credentials;
        let signed = certificate::sign(
            issuer.key(),
            issuer.spec(),
            time,
            creds.access_key_id(),
            creds.secret_access_key(),
            creds.session_token(),
        );
        writeln!(out, "public key hash: {}", issuer.key().public_key_hash())?;
        writeln!(
            out,
            "canonical request:\n{}\n",
            signed.request.canonical_request_redacted()
        )?;
        writeln!(
            out,
            "string to sign:\n{}\n",
            signed.request.string_to_sign()
        )?;
        writeln!(out, "signature: {}", signed.block.signature)?;
    }
    write_pem(&args.out, &issued.certificate.pem)?;
    writeln!(
        out,
        "wrote {}: {} for {} ({service}, {})",
        args.out.display(),
        describe(&issued),
        args.fs_id,
        args.region
    )?;
    out.flush()?;
    Ok(())
}

/// Writes the certificate with mode 0600: with temporary credentials it carries the session
/// token.
fn write_pem(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let context = || format!("cannot write {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(context)?;
    // An existing file keeps its mode on open: tighten it too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(context)?;
    file.write_all(pem.as_bytes()).with_context(context)
}
