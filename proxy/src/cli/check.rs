//! `efs-proxy check`: diagnose the way to a mount target step by step, with the same target,
//! TLS and IAM options as `run`. One line per step (✓, ✗ or — when skipped), its duration, what
//! it saw and, on failure, the fix; `--json` prints the same as one JSON document.
//!
//! Exit status: 0 when every step passed (skipped ones aside), 1 when one failed, 2 for usage
//! errors (from clap).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use efs_proxy::Trust;
use efs_proxy::iam::{
    CredentialSource, CredentialsError, Issued, Issuer, Service, SigningTime, names,
};
use efs_proxy::internal::check::{self, Expected, Plan, Report, Step, StepName, human};
use efs_proxy::internal::upstream::{ClientIdentity, TrustAnchors};
use serde_json::json;

use super::iam::{IamRunArgs, load_key};
use super::target::TargetArgs;

#[derive(Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    server: TargetArgs,
    /// After the bind, send an NFS v4 NULL call and wait for its answer.
    #[arg(long)]
    nfs_null: bool,
    /// Print the report as one JSON document on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    iam: IamRunArgs,
}

/// What the configuration step settled.
struct Settled {
    target: String,
    server_name: String,
    anchors: TrustAnchors,
    certificate: CertificatePlan,
}

enum CertificatePlan {
    /// `--cert`/`--key`.
    Given(ClientIdentity),
    /// Made here for `--fs-id`; signed with credentials unless `--no-iam`.
    Made {
        issuer: Box<Issuer>,
        fs_id: String,
        region: String,
        service: Service,
        iam: bool,
    },
    None,
}

pub(crate) async fn run(args: CheckArgs) -> ExitCode {
    let mut report = Report::new(!args.json);
    if let Some(settled) = config_step(&args, &mut report).await {
        report.target = Some(settled.target.clone());
        report.server_name = Some(settled.server_name.clone());
        if let Some((identity, expected)) = credentials_step(&args, &settled, &mut report).await {
            let plan = Plan {
                target: settled.target,
                server_name: settled.server_name,
                anchors: settled.anchors,
                identity,
                expected,
                connect_timeout: Duration::from_secs(args.server.connect_timeout),
                bind_timeout: Duration::from_secs(args.server.bind_timeout),
                nfs_null: args.nfs_null,
            };
            check::run(&plan, &mut report).await;
        }
    }
    report.skip_rest();

    let mut out = std::io::stdout().lock();
    let written = if args.json {
        let text = serde_json::to_string_pretty(&report.to_json()).unwrap_or_default();
        writeln!(out, "{text}")
    } else {
        writeln!(out, "{}", report.summary())
    };
    if written.and_then(|()| out.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Derives the target and names, loads the trust anchors, the certificate or the key.
async fn config_step(args: &CheckArgs, report: &mut Report) -> Option<Settled> {
    let start = Instant::now();
    match settle(args).await {
        Ok((settled, detail)) => {
            let data = json!({
                "target": settled.target,
                "server_name": settled.server_name,
            });
            report.push(Step::pass(StepName::Config, start.elapsed(), detail).with_data(data));
            Some(settled)
        }
        Err((detail, fix)) => {
            report.push(Step::fail(StepName::Config, start.elapsed(), detail, fix));
            None
        }
    }
}

type ConfigError = (String, String);

fn config_error(detail: impl std::fmt::Display, fix: &str) -> ConfigError {
    (detail.to_string(), fix.to_string())
}

/// The target and the server name, given or derived from `--fs-id`; true when the server
/// name was derived.
fn target_and_name(args: &CheckArgs) -> Result<(String, String, bool), ConfigError> {
    let iam = &args.iam;
    let names = match &iam.fs_id {
        None => {
            if args.server.key.is_some() && args.server.cert.is_none() {
                return Err(config_error(
                    "--key without --cert or --fs-id",
                    "give --cert (the certificate for that key), or --fs-id/--region/--service \
                     to have a certificate made for the key",
                ));
            }
            let (Some(t), Some(s)) = (&args.server.target, &args.server.server_name) else {
                return Err(config_error(
                    "--target and --server-name are required without --fs-id",
                    "pass both, or --fs-id/--region/--service",
                ));
            };
            (t.clone(), s.clone(), false)
        }
        Some(fs_id) => {
            let (Some(region), Some(service)) = (&iam.region, iam.service) else {
                return Err(config_error(
                    "--fs-id needs --region and --service",
                    "pass --region and --service",
                ));
            };
            let names = names::mount_target_names(
                Service::from(service),
                fs_id,
                region,
                iam.az_id.as_deref(),
                iam.dns_suffix.as_deref(),
            )
            .map_err(|e| config_error(e, "correct the value"))?;
            let target = match (args.server.target.clone(), names.target()) {
                (Some(t), _) | (None, Some(t)) => t,
                (None, None) => {
                    return Err(config_error(
                        format!(
                            "S3 Files mount targets are per availability zone: cannot derive the \
                             address of {}",
                            names.server_name
                        ),
                        "pass --az-id (e.g. use1-az1), or --target HOST:PORT (e.g. the NLB's \
                         address)",
                    ));
                }
            };
            let server_name = args
                .server
                .server_name
                .clone()
                .unwrap_or(names.server_name.clone());
            (target, server_name, args.server.server_name.is_none())
        }
    };
    let target = &names.0;
    match target.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
        _ => {
            return Err(config_error(
                format!("--target {target:?} is not HOST:PORT"),
                "pass e.g. --target NLB_DNS:2049",
            ));
        }
    }
    efs_proxy::internal::upstream::server_name(&names.1)
        .map_err(|e| config_error(e, "pass a DNS name"))?;
    Ok(names)
}

/// The client certificate: given (`--cert`), made here for `--fs-id`, or none; and its words.
async fn certificate_plan(args: &CheckArgs) -> Result<(CertificatePlan, String), ConfigError> {
    let iam = &args.iam;
    Ok(match (&args.server.cert, &iam.fs_id) {
        (Some(cert), _) => {
            // clap requires --key with --cert.
            let key = args.server.key.as_deref().unwrap_or(cert.as_path());
            let identity = ClientIdentity::from_pem_files(cert, key)
                .map_err(|e| config_error(e, "check --cert and --key"))?;
            efs_proxy::internal::upstream::client_config(&Trust::NoVerify, true, Some(&identity))
                .map_err(|e| config_error(e, "--key must be the key of --cert"))?;
            (
                CertificatePlan::Given(identity),
                format!("from {}", cert.display()),
            )
        }
        (None, Some(fs_id)) => {
            let region = iam.region.clone().unwrap_or_default();
            let service = Service::from(iam.service.unwrap_or(super::iam::ServiceArg::S3files));
            let mut spec = iam
                .fields
                .spec(fs_id, &region, service)
                .map_err(|e| config_error(super::report(&e), "correct the value"))?;
            if let Some(secs) = iam.cert_lifetime {
                spec.lifetime = Duration::from_secs(secs);
            }
            let key = load_key(args.server.key.as_deref()).await.map_err(|e| {
                config_error(
                    super::report(&e),
                    "--key must be a PEM private key (RSA), or a path where one can be created",
                )
            })?;
            let text = format!(
                "made here for {fs_id} ({service}, {region}){}",
                if iam.no_iam {
                    ", without IAM signature (--no-iam)"
                } else {
                    ", signed with AWS credentials"
                }
            );
            (
                CertificatePlan::Made {
                    issuer: Box::new(Issuer::new(spec, key, None)),
                    fs_id: fs_id.clone(),
                    region,
                    service,
                    iam: !iam.no_iam,
                },
                text,
            )
        }
        (None, None) => (CertificatePlan::None, "none".to_string()),
    })
}

async fn settle(args: &CheckArgs) -> Result<(Settled, String), ConfigError> {
    let (target, server_name, derived) = target_and_name(args)?;
    let trust = args.server.trust();
    let anchors = TrustAnchors::load(&trust).map_err(|e| {
        config_error(
            e,
            "--ca-file must be a PEM file of CA certificates (AWS's efs-utils.crt for real \
             mount targets)",
        )
    })?;
    let trust_text = check::describe_trust(&anchors);

    let (certificate, cert_text) = certificate_plan(args).await?;
    let detail = format!(
        "target {target}, server name {server_name}{}, trust: {trust_text}, client certificate: \
         {cert_text}",
        if derived { " (derived)" } else { "" }
    );
    Ok((
        Settled {
            target,
            server_name,
            anchors,
            certificate,
        },
        detail,
    ))
}

/// Fetches credentials (when the certificate is signed here) and makes the certificate.
async fn credentials_step(
    args: &CheckArgs,
    settled: &Settled,
    report: &mut Report,
) -> Option<(Option<ClientIdentity>, Option<Expected>)> {
    let start = Instant::now();
    let expected_from = |fs_id: &str, region: &str, service: Service, signed: bool| Expected {
        fs_id: fs_id.to_string(),
        region: region.to_string(),
        service,
        signed,
    };
    // --fs-id with --cert: what the certificate should be for, without a region claim.
    let given_expected = || {
        let iam = &args.iam;
        match (&iam.fs_id, &iam.region, iam.service) {
            (Some(fs), Some(region), Some(service)) => {
                Some(expected_from(fs, region, Service::from(service), false))
            }
            _ => None,
        }
    };
    match &settled.certificate {
        CertificatePlan::None => {
            report.push(Step::skip(
                StepName::Credentials,
                "not used: no --fs-id, so no certificate is signed",
            ));
            Some((None, None))
        }
        CertificatePlan::Given(identity) => {
            report.push(Step::skip(
                StepName::Credentials,
                "not used: --cert is presented as is",
            ));
            Some((Some(identity.clone()), given_expected()))
        }
        CertificatePlan::Made {
            issuer,
            fs_id,
            region,
            service,
            iam: false,
        } => match issuer.issue_with(None, SigningTime::now()) {
            Ok(issued) => {
                report.push(Step::skip(
                    StepName::Credentials,
                    "not used: --no-iam makes a certificate without IAM signature",
                ));
                Some((
                    Some(issued.identity),
                    Some(expected_from(fs_id, region, *service, false)),
                ))
            }
            Err(e) => {
                report.push(Step::fail(
                    StepName::Credentials,
                    start.elapsed(),
                    format!("cannot make the client certificate without IAM: {e}"),
                    "check --key and the certificate options",
                ));
                None
            }
        },
        CertificatePlan::Made {
            issuer,
            fs_id,
            region,
            service,
            iam: true,
        } => {
            let identity = sign_here(args, issuer, region, start, report).await?;
            Some((
                Some(identity),
                Some(expected_from(fs_id, region, *service, true)),
            ))
        }
    }
}

/// Fetches AWS credentials and signs the certificate with them; the credentials line (or why
/// not) goes into the report.
async fn sign_here(
    args: &CheckArgs,
    issuer: &Issuer,
    region: &str,
    start: Instant,
    report: &mut Report,
) -> Option<ClientIdentity> {
    let profile = args.iam.fields.profile.as_deref();
    let source = CredentialSource::new(region, profile, args.iam.fields.credentials_timeout());
    let credentials = match source.fetch().await {
        Ok(c) => c,
        Err(e) => {
            let (detail, fix) = credentials_failure(&e);
            report.push(Step::fail(
                StepName::Credentials,
                start.elapsed(),
                detail,
                fix,
            ));
            return None;
        }
    };
    let issued = match issuer.issue_with(Some(&credentials), SigningTime::now()) {
        Ok(i) => i,
        Err(e) => {
            report.push(Step::fail(
                StepName::Credentials,
                start.elapsed(),
                format!("cannot sign the certificate: {e}"),
                "check the credentials' source configuration",
            ));
            return None;
        }
    };
    report.push(describe_credentials(&issued, profile, start.elapsed()));
    report.last_passed().then_some(issued.identity)
}

/// The credentials line: source, access key id, session token presence and expiry. Never the
/// secret access key or the session token itself.
fn describe_credentials(issued: &Issued, profile: Option<&str>, elapsed: Duration) -> Step {
    let source = issued.credentials_source.unwrap_or("?");
    let source_text = match (source, profile) {
        ("profile", Some(p)) => format!("profile {p:?}"),
        (s, _) => s.to_string(),
    };
    let akid = issued.access_key_id.clone().unwrap_or_default();
    let signed_at = issued.certificate.signed_at;
    let has_token = efs_proxy::iam::certificate::decode(&issued.certificate.der)
        .ok()
        .and_then(|c| c.sigv4)
        .is_some_and(|s| s.session_token);
    let now = SystemTime::now();
    let (expiry_text, expired) = match issued.credentials_expiry {
        None => ("no expiry (long-term keys)".to_string(), false),
        Some(t) => match t.duration_since(now) {
            Ok(left) => (
                format!(
                    "expire {} (in {})",
                    SigningTime::from_system_time(t),
                    human(left)
                ),
                false,
            ),
            Err(_) => (
                format!("expired at {}", SigningTime::from_system_time(t)),
                true,
            ),
        },
    };
    let detail = format!(
        "{source_text}: access key {akid}, {}, {expiry_text}; certificate signed at {signed_at}",
        if has_token {
            "with session token (not shown)"
        } else {
            "no session token"
        }
    );
    let data = json!({
        "source": source,
        "profile": profile,
        "access_key_id": akid,
        "session_token": has_token,
        "expiry": issued.credentials_expiry.map(|t| SigningTime::from_system_time(t).to_string()),
    });
    let step = if expired {
        Step::fail(
            StepName::Credentials,
            elapsed,
            detail,
            "refresh the credentials (aws sso login, a new session, or the role's provider)",
        )
    } else {
        Step::pass(StepName::Credentials, elapsed, detail)
    };
    step.with_data(data)
}

/// The credentials error without its advice, and the advice as the fix.
fn credentials_failure(e: &CredentialsError) -> (String, String) {
    match e {
        CredentialsError::NotFound { tried } => (
            format!("no AWS credentials found; tried, in order: {tried}"),
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), configure \
             a profile in ~/.aws/config or ~/.aws/credentials (then --profile NAME or \
             AWS_PROFILE), or run with an instance, task or pod role"
                .to_string(),
        ),
        CredentialsError::Timeout {
            limit,
            provider,
            tried,
        } => (
            format!(
                "the AWS credentials lookup did not finish within {limit:?} (still trying: \
                 {provider}; already tried: {tried})"
            ),
            "on EC2, check that instance metadata (IMDSv2) is reachable and the instance has a \
             role; or provide credentials another way"
                .to_string(),
        ),
        CredentialsError::Profile { profile, .. } => (
            format!(
                "profile {profile:?} did not provide credentials: {}",
                e.reason().unwrap_or_default()
            ),
            "check ~/.aws/config and ~/.aws/credentials (or AWS_CONFIG_FILE / \
             AWS_SHARED_CREDENTIALS_FILE); for SSO, run aws sso login"
                .to_string(),
        ),
        other => (
            other.to_string(),
            "check that credential source's configuration".to_string(),
        ),
    }
}
