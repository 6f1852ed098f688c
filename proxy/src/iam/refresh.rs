//! Keeps the client certificate fresh inside the proxy, without efs-utils' watchdog.
//!
//! A certificate matters only during a TLS handshake, so replacing it affects new server
//! connections only; open ones keep theirs (see `TlsConfigHandle`). The next refresh is
//! due a margin before the earlier of the certificate's expiry and the credentials' expiry
//! (temporary credentials cannot sign for a handshake after they expire). If the margin has
//! already begun (the provider handed back the same soon-to-expire credentials, or a
//! certificate lifetime shorter than the margin), the next attempt is half-way to that
//! expiry, and never sooner than a minimum interval.
//!
//! A failed refresh keeps the current certificate (still good until it expires) and retries
//! with exponential backoff; each failure is logged with what is at stake.
//!
//! Waits re-read the wall clock at least every minute, so a suspended host or a clock step
//! does not postpone a refresh past an expiry.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::ClientConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::issuer::{Issued, Issuer};
use super::signing_time::SigningTime;
use crate::stats::Stats;
use crate::upstream::tls::{ClientIdentity, TlsConfigHandle, TlsSetupError};

/// When to refresh and how to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Refresh this long before the certificate expires. The default, 2 hours with 3-hour
    /// certificates, renews hourly: efs-utils' `tls_cert_renewal_interval_min = 60`.
    pub certificate_margin: Duration,
    /// Refresh this long before the credentials expire (default 5 minutes; IMDS and the
    /// container endpoints rotate role credentials at least that early).
    pub credentials_margin: Duration,
    /// Never attempt sooner than this after the previous attempt (default 10 s).
    pub min_interval: Duration,
    /// The first retry delay after a failure (default 5 s), doubled per failure...
    pub retry_initial: Duration,
    /// ...up to this (default 5 minutes).
    pub retry_max: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            certificate_margin: Duration::from_secs(2 * 3600),
            credentials_margin: Duration::from_secs(5 * 60),
            min_interval: Duration::from_secs(10),
            retry_initial: Duration::from_secs(5),
            retry_max: Duration::from_secs(5 * 60),
        }
    }
}

/// What the next refresh is racing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// The certificate's notAfter comes first (less its margin).
    CertificateExpiry,
    /// The temporary credentials that signed it expire first (less their margin): the mount
    /// target checks the signature's credentials too.
    CredentialsExpiry,
}

impl std::fmt::Display for Deadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Deadline::CertificateExpiry => "certificate expiry",
            Deadline::CredentialsExpiry => "credentials expiry",
        })
    }
}

/// When to refresh a certificate that expires at `not_after`, signed with credentials that
/// expire at `credentials_expiry`.
pub fn next_refresh(
    now: SystemTime,
    not_after: SystemTime,
    credentials_expiry: Option<SystemTime>,
    policy: &RefreshPolicy,
) -> (SystemTime, Deadline) {
    let sub = |t: SystemTime, d: Duration| t.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH);
    let by_certificate = (
        sub(not_after, policy.certificate_margin),
        not_after,
        Deadline::CertificateExpiry,
    );
    let by_credentials = credentials_expiry.map(|exp| {
        (
            sub(exp, policy.credentials_margin),
            exp,
            Deadline::CredentialsExpiry,
        )
    });
    let (at, expiry, why) = match by_credentials {
        Some(c) if c.0 < by_certificate.0 => c,
        _ => by_certificate,
    };
    let earliest = now + policy.min_interval;
    if at >= earliest {
        return (at, why);
    }
    let left = expiry.duration_since(now).unwrap_or(Duration::ZERO);
    (now + (left / 2).max(policy.min_interval), why)
}

/// The delay after the `failures`-th consecutive failure.
pub fn backoff(failures: u32, policy: &RefreshPolicy) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1));
    policy
        .retry_initial
        .saturating_mul(factor)
        .min(policy.retry_max)
}

/// One line describing a certificate, for logs. Never contains secrets.
pub fn describe(issued: &Issued) -> String {
    let cert = &issued.certificate;
    let mut text = format!(
        "signed at {}, valid {} to {}",
        cert.signed_at, cert.not_before, cert.not_after
    );
    match (&issued.access_key_id, issued.credentials_source) {
        (Some(akid), Some(source)) => {
            text.push_str(&format!(", access key {akid} from {source} credentials"));
        }
        _ => text.push_str(", without IAM signature"),
    }
    if let Some(exp) = issued.credentials_expiry {
        text.push_str(&format!(" (expire {})", SigningTime::from_system_time(exp)));
    }
    text
}

/// Replaces the proxy's TLS configuration with one presenting `identity`.
pub type Rebuild =
    Arc<dyn Fn(&ClientIdentity) -> Result<ClientConfig, TlsSetupError> + Send + Sync + 'static>;

/// Starts the refresh task for a proxy: new certificates go into `handle` (built by
/// `rebuild`) until `shutdown` is cancelled.
pub fn spawn(
    issuer: Arc<Issuer>,
    current: Issued,
    policy: RefreshPolicy,
    handle: TlsConfigHandle,
    rebuild: Rebuild,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(run(
        issuer, current, policy, handle, rebuild, stats, shutdown,
    ))
}

async fn run(
    issuer: Arc<Issuer>,
    mut current: Issued,
    policy: RefreshPolicy,
    handle: TlsConfigHandle,
    rebuild: Rebuild,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) {
    let not_after = |i: &Issued| i.certificate.not_after.system_time();
    let (mut next, why) = next_refresh(
        SystemTime::now(),
        not_after(&current),
        current.credentials_expiry,
        &policy,
    );
    info!(
        "next certificate refresh at {} (before {why})",
        SigningTime::from_system_time(next)
    );
    let mut failures = 0u32;
    loop {
        if !sleep_until_wall_clock(next, &shutdown).await {
            return;
        }
        let attempt = async {
            let issued = issuer.issue().await.map_err(|e| e.to_string())?;
            let config = rebuild(&issued.identity).map_err(|e| e.to_string())?;
            handle.replace(config);
            Ok::<_, String>(issued)
        };
        let outcome = attempt.await;
        let now = SystemTime::now();
        match outcome {
            Ok(issued) => {
                failures = 0;
                stats.set_certificate_expiry(Some(not_after(&issued)));
                let (at, why) =
                    next_refresh(now, not_after(&issued), issued.credentials_expiry, &policy);
                info!(
                    "client certificate refreshed: {}; new connections use it; next refresh \
                     at {} (before {why})",
                    describe(&issued),
                    SigningTime::from_system_time(at)
                );
                current = issued;
                next = at;
            }
            Err(reason) => {
                failures += 1;
                let delay = backoff(failures, &policy);
                let expires = not_after(&current);
                match expires.duration_since(now) {
                    Ok(left) => warn!(
                        "client certificate refresh failed (attempt {failures}): {reason}; \
                         keeping the current certificate, valid until {} ({}s left); \
                         retrying in {delay:?}",
                        current.certificate.not_after,
                        left.as_secs()
                    ),
                    Err(_) => error!(
                        "client certificate refresh failed (attempt {failures}): {reason}; the \
                         current certificate expired at {}, so the mount target will refuse \
                         new connections until a refresh succeeds; retrying in {delay:?}",
                        current.certificate.not_after
                    ),
                }
                next = now + delay;
            }
        }
    }
}

/// Sleeps until the wall clock reaches `at`, in slices of at most a minute. False when
/// `shutdown` was cancelled first.
async fn sleep_until_wall_clock(at: SystemTime, shutdown: &CancellationToken) -> bool {
    loop {
        let Ok(left) = at.duration_since(SystemTime::now()) else {
            return true;
        };
        if left.is_zero() {
            return true;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(left.min(Duration::from_secs(60))) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const MIN: Duration = Duration::from_secs(60);

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn long_term_keys_renew_hourly_like_efs_utils() {
        let policy = RefreshPolicy::default();
        let (at, why) = next_refresh(t0(), t0() + 3 * HOUR, None, &policy);
        assert_eq!((at, why), (t0() + HOUR, Deadline::CertificateExpiry));
    }

    #[test]
    fn expiring_credentials_move_the_refresh_earlier() {
        let policy = RefreshPolicy::default();
        let (at, why) = next_refresh(t0(), t0() + 3 * HOUR, Some(t0() + 30 * MIN), &policy);
        assert_eq!((at, why), (t0() + 25 * MIN, Deadline::CredentialsExpiry));
        // Credentials that outlive the certificate's margin change nothing.
        let (at, why) = next_refresh(t0(), t0() + 3 * HOUR, Some(t0() + 6 * HOUR), &policy);
        assert_eq!((at, why), (t0() + HOUR, Deadline::CertificateExpiry));
    }

    #[test]
    fn inside_the_margin_the_next_attempt_is_half_way_but_not_too_soon() {
        let policy = RefreshPolicy::default();
        // The provider returned credentials expiring in 4 minutes (inside the 5-minute margin).
        let (at, _) = next_refresh(t0(), t0() + 3 * HOUR, Some(t0() + 4 * MIN), &policy);
        assert_eq!(at, t0() + 2 * MIN);
        // Already expired: retry after the minimum interval, not in a busy loop.
        let (at, _) = next_refresh(t0(), t0() + 3 * HOUR, Some(t0() - MIN), &policy);
        assert_eq!(at, t0() + policy.min_interval);
    }

    #[test]
    fn short_test_lifetimes_work_with_small_margins() {
        let policy = RefreshPolicy {
            certificate_margin: Duration::from_secs(2),
            min_interval: Duration::from_millis(500),
            ..RefreshPolicy::default()
        };
        let (at, why) = next_refresh(t0(), t0() + Duration::from_secs(5), None, &policy);
        assert_eq!(
            (at, why),
            (t0() + Duration::from_secs(3), Deadline::CertificateExpiry)
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RefreshPolicy::default();
        let delays: Vec<_> = (1..=9).map(|n| backoff(n, &policy).as_secs()).collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX, &policy), policy.retry_max);
    }
}
