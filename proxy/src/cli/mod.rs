//! Subcommands of the `efs-proxy` binary.

pub(crate) mod assets;
pub(crate) mod cert;
pub(crate) mod check;
pub(crate) mod dropin;
pub(crate) mod iam;
pub(crate) mod mount;
pub(crate) mod mount_admin;
pub(crate) mod mount_daemon;
pub(crate) mod run;
pub(crate) mod target;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{FilterFn, filter_fn};

/// The Tokio runtime of every subcommand: multi-threaded, one worker per core unless
/// `EFS_PROXY_WORKER_THREADS` says otherwise (the benchmark compares settings with it).
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("EFS_PROXY_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        builder.worker_threads(n);
    }
    builder.enable_all().build()
}

/// The log filter for `--log-level LEVEL`: `RUST_LOG` wins if set; `info` if neither parses.
pub(crate) fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::EnvFilter;
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// A global log filter that drops aws-smithy-runtime's request and response dumps.
///
/// At TRACE its orchestrator logs every request it sends (`transmitting request`) and every
/// response (`received response from service`) with all their headers. Its `Headers` debug
/// output redacts only a fixed list (`authorization`, `x-amz-security-token`, …), so with
/// `--log-level trace` the SSO portal's `x-amz-sso_bearer_token` (an IAM Identity Center
/// access token, good for hours) went to the log in clear, as `proxy/tests/iam/sts.rs` (SSO)
/// showed; by the same list, so would IMDSv2's `x-aws-ec2-metadata-token`. These two events
/// are dropped, whatever the level or `RUST_LOG`; every other TRACE event stays.
pub(crate) fn without_request_dumps() -> FilterFn<fn(&Metadata<'_>) -> bool> {
    fn keep(meta: &Metadata<'_>) -> bool {
        !(*meta.level() == Level::TRACE
            && meta.target() == "aws_smithy_runtime::client::orchestrator")
    }
    filter_fn(keep as fn(&Metadata<'_>) -> bool)
}

/// One line for an error and its causes, each cause once.
///
/// anyhow's `{:#}` appends every cause in the chain, but many of our errors (and rustls',
/// std's) already quote their cause in their own message, which would print it twice
/// ("…: Address already in use (os error 98): Address already in use (os error 98)").
/// A cause whose text is already in the line is skipped.
pub(crate) fn report(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::report;
    use std::io;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path}: {source}")]
    struct Quoting {
        path: &'static str,
        source: io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen")]
    struct Silent {
        #[source]
        source: io::Error,
    }

    #[test]
    fn a_quoted_cause_is_printed_once() {
        let e = anyhow::Error::new(Quoting {
            path: "/x",
            source: io::Error::other("denied"),
        });
        assert_eq!(report(&e), "cannot read /x: denied");
    }

    #[test]
    fn an_unquoted_cause_is_appended() {
        let e = anyhow::Error::new(Silent {
            source: io::Error::other("in use"),
        })
        .context("starting");
        assert_eq!(report(&e), "starting: cannot listen: in use");
    }
}
