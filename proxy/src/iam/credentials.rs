//! AWS credentials for signing: `aws-config`'s default provider chain, in its order, with
//! every attempt recorded so that "no credentials" says what was tried.
//!
//! The chain, as `aws_config::default_provider::credentials::DefaultCredentialsChain`:
//!
//! 1. environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`;
//! 2. shared config and credentials files (`~/.aws/config`, `~/.aws/credentials`, or
//!    `AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE`), profile `AWS_PROFILE` or `default`,
//!    with SSO, assume-role, `credential_process`;
//! 3. web identity: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (EKS IRSA);
//! 4. container credentials: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (ECS) or
//!    `AWS_CONTAINER_CREDENTIALS_FULL_URI` + `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (EKS Pod
//!    Identity);
//! 5. EC2 instance metadata (IMDSv2), unless `AWS_EC2_METADATA_DISABLED=true`.
//!
//! With an explicit profile (`--profile`) only that profile is used, as the AWS CLI's
//! `--profile` overrides environment credentials.
//!
//! The HTTP client (for SSO, STS, container and IMDS endpoints) is `aws-smithy-http-client`
//! on rustls with ring, so the whole chain stays on the project's one crypto backend
//! (`docs/architecture.md`, "Dependencies and why").

use std::time::{Duration, Instant};

use aws_config::Region;
use aws_config::ecs::EcsCredentialsProvider;
use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::imds;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::web_identity_token::WebIdentityTokenCredentialsProvider;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::error::CredentialsError as SdkError;
use aws_smithy_http_client::tls;
use thiserror::Error;

/// Default limit for one lookup through the whole chain. Enough for IMDS (1 s connect and
/// read timeouts, one retry) and an STS or SSO call; short enough that a host without any
/// credentials fails a mount quickly instead of hanging.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why no credentials could be had. Messages never contain secrets.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// No provider of the chain is configured; `tried` names each and why it had nothing.
    #[error(
        "no AWS credentials found; tried, in order: {tried}. Set AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), configure a profile in ~/.aws/config \
         or ~/.aws/credentials (then --profile NAME or AWS_PROFILE), or run with an instance, \
         task or pod role"
    )]
    NotFound {
        /// Each provider of the chain and why it had nothing, in order, `; `-separated.
        tried: String,
    },
    /// The lookup did not finish in time, stuck at `provider`.
    #[error(
        "AWS credentials lookup did not finish within {limit:?} (still trying: {provider}; \
         already tried: {tried}); on EC2, check that instance metadata (IMDSv2) is reachable \
         and the instance has a role, or provide credentials another way"
    )]
    Timeout {
        /// The time the whole lookup was given.
        limit: Duration,
        /// The provider still being asked when time ran out.
        provider: &'static str,
        /// The providers asked before it and why each had nothing.
        tried: String,
    },
    /// A configured provider failed (the chain stops there, as aws-config's does).
    #[error("AWS credentials from {provider} failed: {}", error_chain(.source))]
    Provider {
        /// The provider that failed (`environment`, `instance metadata`, ...).
        provider: &'static str,
        /// The provider's error, from aws-credential-types.
        #[source]
        source: SdkError,
    },
    /// The profile given with `--profile` had no credentials or failed to provide them.
    #[error(
        "profile {profile:?} did not provide credentials: {}; check ~/.aws/config and \
         ~/.aws/credentials (or AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE)",
        profile_reason(.source, .profile)
    )]
    Profile {
        /// The profile name.
        profile: String,
        /// The profile provider's error.
        #[source]
        source: SdkError,
    },
}

impl CredentialsError {
    /// Why the provider failed, in words (its error and their causes, without aws-config's
    /// generic text); `None` for the errors that are not one provider's.
    pub fn reason(&self) -> Option<String> {
        match self {
            CredentialsError::Provider { source, .. } => Some(error_chain(source)),
            CredentialsError::Profile { profile, source } => Some(profile_reason(source, profile)),
            _ => None,
        }
    }
}

/// Credentials and where they came from.
#[derive(Clone)]
pub struct SourcedCredentials {
    /// Access key id, secret key and, for temporary credentials, session token and expiry.
    pub credentials: Credentials,
    /// The provider that supplied them: `environment`, `profile`, `web identity`,
    /// `container`, `instance metadata`.
    pub source: &'static str,
    /// How long the lookup took.
    pub elapsed: Duration,
}

impl std::fmt::Debug for SourcedCredentials {
    /// `Credentials`' own `Debug` redacts the secret key; the token is not printed either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourcedCredentials")
            .field("access_key_id", &self.credentials.access_key_id())
            .field("source", &self.source)
            .field("expiry", &self.credentials.expiry())
            .finish_non_exhaustive()
    }
}

/// The credential providers, built once and asked again at every refresh.
pub struct CredentialSource {
    providers: Vec<(&'static str, Box<dyn ProvideCredentials>)>,
    profile: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.providers.iter().map(|(n, _)| *n).collect();
        f.debug_struct("CredentialSource")
            .field("providers", &names)
            .field("profile", &self.profile)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl CredentialSource {
    /// The default chain for a file system in `region` (also the region of STS and SSO
    /// calls), or only `profile` when given. `timeout` bounds each [`fetch`](Self::fetch).
    ///
    /// Must be called inside a Tokio runtime.
    pub fn new(region: &str, profile: Option<&str>, timeout: Duration) -> CredentialSource {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let conf = ProviderConfig::default()
            .with_http_client(http)
            .with_region(Some(Region::new(region.to_string())));

        let mut profile_builder = ProfileFileCredentialsProvider::builder().configure(&conf);
        if let Some(name) = profile {
            profile_builder = profile_builder.profile_name(name);
        }
        let profile_provider: Box<dyn ProvideCredentials> = Box::new(profile_builder.build());
        let providers: Vec<(&'static str, Box<dyn ProvideCredentials>)> = match profile {
            Some(_) => vec![("profile", profile_provider)],
            None => {
                let imds_client = imds::Client::builder()
                    .configure(&conf)
                    .connect_timeout(Duration::from_secs(1))
                    .read_timeout(Duration::from_secs(1))
                    .max_attempts(2)
                    .build();
                vec![
                    (
                        "environment",
                        Box::new(EnvironmentVariableCredentialsProvider::new()),
                    ),
                    ("profile", profile_provider),
                    (
                        "web identity",
                        Box::new(
                            WebIdentityTokenCredentialsProvider::builder()
                                .configure(&conf)
                                .build(),
                        ),
                    ),
                    (
                        "container",
                        Box::new(EcsCredentialsProvider::builder().configure(&conf).build()),
                    ),
                    (
                        "instance metadata",
                        Box::new(
                            ImdsCredentialsProvider::builder()
                                .configure(&conf)
                                .imds_client(imds_client)
                                .build(),
                        ),
                    ),
                ]
            }
        };
        CredentialSource {
            providers,
            profile: profile.map(str::to_string),
            timeout,
        }
    }

    /// Asks each provider in turn; the first with credentials wins. A provider that is not
    /// configured is skipped (and named in the error if none has credentials); one that is
    /// configured but fails stops the search, as in aws-config's chain.
    pub async fn fetch(&self) -> Result<SourcedCredentials, CredentialsError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut tried: Vec<String> = Vec::new();
        for (name, provider) in &self.providers {
            let attempt = tokio::time::timeout_at(deadline, provider.provide_credentials()).await;
            match attempt {
                Err(_) => {
                    return Err(CredentialsError::Timeout {
                        limit: self.timeout,
                        provider: name,
                        tried: list(&tried),
                    });
                }
                Ok(Ok(credentials)) => {
                    tracing::debug!(source = name, elapsed = ?started.elapsed(), "loaded AWS credentials");
                    return Ok(SourcedCredentials {
                        credentials,
                        source: name,
                        elapsed: started.elapsed(),
                    });
                }
                Ok(Err(source)) => {
                    if let Some(profile) = &self.profile {
                        return Err(CredentialsError::Profile {
                            profile: profile.clone(),
                            source,
                        });
                    }
                    if !matches!(source, SdkError::CredentialsNotLoaded(_)) {
                        return Err(CredentialsError::Provider {
                            provider: name,
                            source,
                        });
                    }
                    let reason = not_loaded_reason(name, &source, None);
                    tracing::debug!(source = name, %reason, "no credentials");
                    tried.push(format!("{name} ({reason})"));
                }
            }
        }
        Err(CredentialsError::NotFound {
            tried: list(&tried),
        })
    }
}

fn list(tried: &[String]) -> String {
    if tried.is_empty() {
        "nothing".to_string()
    } else {
        tried.join("; ")
    }
}

/// Why the `--profile` profile failed: what it lacks when it has no credentials, else the
/// error and its causes.
fn profile_reason(err: &SdkError, profile: &str) -> String {
    match err {
        SdkError::CredentialsNotLoaded(_) => not_loaded_reason("profile", err, Some(profile)),
        _ => error_chain(err),
    }
}

/// Why a provider had nothing, without aws-config's generic "the credential provider was not
/// enabled" (every skipped provider says it).
fn not_loaded_reason(
    provider: &str,
    err: &(dyn std::error::Error + 'static),
    profile: Option<&str>,
) -> String {
    let specific = err.source().map(error_chain).unwrap_or_default();
    if !specific.is_empty() {
        return specific;
    }
    match provider {
        "profile" => {
            let name = profile
                .map(str::to_string)
                .or_else(|| std::env::var("AWS_PROFILE").ok())
                .unwrap_or_else(|| "default".to_string());
            format!("no profile {name:?} with credentials in ~/.aws/config or ~/.aws/credentials")
        }
        _ => "not configured".to_string(),
    }
}

/// An error and its sources, `: `-joined, without repeating a message its cause repeats.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chains_are_flattened() {
        let inner = std::io::Error::other("connection refused");
        let err = SdkError::not_loaded(inner);
        let text = error_chain(&err);
        assert!(text.contains("connection refused"), "{text}");
    }

    /// aws-config's error is kept as the cause; the message says what the profile lacks.
    #[test]
    fn a_profile_error_keeps_aws_configs_error() {
        let err = CredentialsError::Profile {
            profile: "dev".into(),
            source: SdkError::not_loaded(std::io::Error::other("no [profile dev] section")),
        };
        let text = err.to_string();
        assert!(
            text.starts_with(
                "profile \"dev\" did not provide credentials: no [profile dev] section; check"
            ),
            "{text}"
        );
        let cause = std::error::Error::source(&err).expect("aws-config's error");
        assert!(cause.downcast_ref::<SdkError>().is_some());
        assert_eq!(err.reason().as_deref(), Some("no [profile dev] section"));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let creds = SourcedCredentials {
            credentials: Credentials::new("AKID", "SECRETKEY", Some("TOKEN".into()), None, "t"),
            source: "environment",
            elapsed: Duration::ZERO,
        };
        let shown = format!("{creds:?}");
        assert!(shown.contains("AKID"));
        assert!(
            !shown.contains("SECRETKEY") && !shown.contains("TOKEN"),
            "{shown}"
        );
    }
}
