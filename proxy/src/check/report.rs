//! The report of `efs-proxy check`: one [`Step`] per line, in the order of [`StepName::ALL`],
//! printed as text (`✓ dns  0.12 ms  …`) or as one JSON document.
//!
//! The JSON field names, the step names and the problem ids are an interface:
//! `container/entrypoint.sh` classifies a failed preflight by them, and `proxy/tests/check/`
//! pins them. Change them only together with those.

use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};

/// The steps of a check, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepName {
    /// The command line: target, server name, trust anchors, the client certificate's source.
    Config,
    /// AWS credentials, when the certificate is signed here.
    Credentials,
    /// Name resolution of the target.
    Dns,
    /// A TCP connection to each address.
    Tcp,
    /// The TLS handshake with the mount target (or its NLB).
    Tls,
    /// What the client certificate carries.
    ClientCert,
    /// AWSFILE `bind_client_to_partition`.
    Bind,
    /// An NFS NULL call after the bind, when asked.
    NfsNull,
}

impl StepName {
    /// Every step, in order.
    pub const ALL: [StepName; 8] = [
        StepName::Config,
        StepName::Credentials,
        StepName::Dns,
        StepName::Tcp,
        StepName::Tls,
        StepName::ClientCert,
        StepName::Bind,
        StepName::NfsNull,
    ];

    /// The name in the text line and in `--json`'s `"step"`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Config => "config",
            StepName::Credentials => "credentials",
            StepName::Dns => "dns",
            StepName::Tcp => "tcp",
            StepName::Tls => "tls",
            StepName::ClientCert => "client-cert",
            StepName::Bind => "bind",
            StepName::NfsNull => "nfs-null",
        }
    }
}

impl fmt::Display for StepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What a step came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The step saw what it needed.
    Pass,
    /// The step failed; the line says why and what to fix.
    Fail,
    /// The step did not run (not asked for, or an earlier step failed).
    Skip,
}

impl Status {
    /// The mark that starts the text line: `✓`, `✗` or `—`.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Pass => "✓",
            Status::Fail => "✗",
            Status::Skip => "—",
        }
    }

    /// The `"status"` value in `--json`: `pass`, `fail` or `skip`.
    pub fn id(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

/// The failures users meet most, each with its own message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The target speaks NFS in plaintext: not EFS/S3 Files' TLS port (a direct
    /// `mount -t nfs4` of the real thing gets "access denied").
    PlainNfs,
    /// The peer is not a TLS endpoint at all.
    NoTls,
    /// TLS works, but the client certificate carries no IAM (SigV4) signature.
    TlsWithoutIam,
    /// DNS, TCP refused or TCP timeout: the NLB or mount target cannot be reached.
    Unreachable,
    /// The certificate was made for another region or file system than the target serves.
    WrongRegionOrFsId,
}

impl Problem {
    /// Stable id for `--json`.
    pub fn id(self) -> &'static str {
        match self {
            Problem::PlainNfs => "plain-nfs",
            Problem::NoTls => "no-tls",
            Problem::TlsWithoutIam => "tls-without-iam",
            Problem::Unreachable => "unreachable",
            Problem::WrongRegionOrFsId => "wrong-region-or-fs-id",
        }
    }

    /// The words each message starts with.
    pub fn label(self) -> &'static str {
        match self {
            Problem::PlainNfs => "plain NFS without TLS",
            Problem::NoTls => "no TLS",
            Problem::TlsWithoutIam => "TLS without IAM",
            Problem::Unreachable => "unreachable",
            Problem::WrongRegionOrFsId => "wrong region or file system id",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Step {
    /// Which step this line reports.
    pub name: StepName,
    /// What it came to.
    pub status: Status,
    /// How long it took; `None` for a skipped step.
    pub elapsed: Option<Duration>,
    /// What the step saw (on failure: what went wrong; when skipped: why).
    pub detail: String,
    /// What to do about a failure.
    pub fix: Option<String>,
    /// The known kind of failure, when it is one.
    pub problem: Option<Problem>,
    /// Structured facts for `--json` (addresses, protocol, partition, ...).
    pub data: Value,
}

impl Step {
    /// A passed step.
    pub fn pass(name: StepName, elapsed: Duration, detail: impl Into<String>) -> Step {
        Step {
            name,
            status: Status::Pass,
            elapsed: Some(elapsed),
            detail: detail.into(),
            fix: None,
            problem: None,
            data: Value::Null,
        }
    }

    /// A failed step with the fix to suggest.
    pub fn fail(
        name: StepName,
        elapsed: Duration,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Step {
        Step {
            status: Status::Fail,
            fix: Some(fix.into()),
            ..Step::pass(name, elapsed, detail)
        }
    }

    /// A failure of a known kind: the detail starts with the problem's label.
    pub fn problem(
        name: StepName,
        elapsed: Duration,
        problem: Problem,
        detail: impl fmt::Display,
        fix: impl Into<String>,
    ) -> Step {
        let mut step = Step::fail(name, elapsed, format!("{}: {detail}", problem.label()), fix);
        step.problem = Some(problem);
        step
    }

    /// A step that did not run, and why.
    pub fn skip(name: StepName, reason: impl Into<String>) -> Step {
        Step {
            status: Status::Skip,
            elapsed: None,
            ..Step::pass(name, Duration::ZERO, reason)
        }
    }

    /// The step with structured facts for `--json`.
    pub fn with_data(mut self, data: Value) -> Step {
        self.data = data;
        self
    }

    /// The text line: mark, name, duration, detail, fix.
    pub fn line(&self) -> String {
        let time = self.elapsed.map(format_elapsed).unwrap_or_default();
        let mut line = format!(
            "{} {:<11} {:>9}  {}",
            self.status.mark(),
            self.name.as_str(),
            time,
            self.detail
        );
        if let Some(fix) = &self.fix {
            line.push_str(". Fix: ");
            line.push_str(fix);
        }
        line
    }

    /// The step's object in `--json`'s `"steps"` (`ms` rounded to hundredths).
    pub fn to_json(&self) -> Value {
        json!({
            "step": self.name.as_str(),
            "status": self.status.id(),
            "ms": self.elapsed.map(|d| (d.as_secs_f64() * 100_000.0).round() / 100.0),
            "detail": self.detail,
            "fix": self.fix,
            "problem": self.problem.map(Problem::id),
            "data": self.data,
        })
    }
}

/// `0.12 ms`, `12.3 ms`, `1.20 s`.
pub fn format_elapsed(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// `1 certificate`, `2 certificates`.
pub(crate) fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// A duration for people: `42 s`, `17 min`, `5 h 59 min`, `3 days`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..172_800 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} days", s / 86_400),
    }
}

/// The steps so far; printed as they come when `live`.
#[derive(Debug, Default)]
pub struct Report {
    /// The steps pushed so far, in order.
    pub steps: Vec<Step>,
    /// The target checked (`host:port`), once the configuration is settled.
    pub target: Option<String>,
    /// The server name checked, once the configuration is settled.
    pub server_name: Option<String>,
    /// Print each step's line on stdout when it is pushed.
    pub live: bool,
}

impl Report {
    /// An empty report.
    pub fn new(live: bool) -> Report {
        Report {
            live,
            ..Default::default()
        }
    }

    /// Adds a step (and prints its line when `live`).
    pub fn push(&mut self, step: Step) {
        if self.live {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", step.line());
            let _ = out.flush();
        }
        self.steps.push(step);
    }

    /// True when no step failed.
    pub fn ok(&self) -> bool {
        !self.steps.iter().any(|s| s.status == Status::Fail)
    }

    /// The first failure of a known kind.
    pub fn problem(&self) -> Option<Problem> {
        self.steps.iter().find_map(|s| s.problem)
    }

    /// True when the last step pushed passed.
    pub fn last_passed(&self) -> bool {
        self.steps.last().is_some_and(|s| s.status == Status::Pass)
    }

    /// Adds every step not reached as skipped, naming the failure that stopped the run.
    pub fn skip_rest(&mut self) {
        let reason = match self.steps.iter().rev().find(|s| s.status == Status::Fail) {
            Some(failed) => format!("skipped: {} failed", failed.name.as_str()),
            None => "skipped".to_string(),
        };
        for name in StepName::ALL {
            if !self.steps.iter().any(|s| s.name == name) {
                self.push(Step::skip(name, reason.clone()));
            }
        }
    }

    fn counts(&self) -> (usize, usize, usize) {
        let n = |status| self.steps.iter().filter(|s| s.status == status).count();
        (n(Status::Pass), n(Status::Fail), n(Status::Skip))
    }

    /// The last line of the text report.
    pub fn summary(&self) -> String {
        let (passed, failed, skipped) = self.counts();
        if self.ok() {
            return format!("all checks passed ({passed} passed, {skipped} skipped)");
        }
        let what = match self.problem() {
            Some(p) => p.label().to_string(),
            None => {
                let names: Vec<&str> = self
                    .steps
                    .iter()
                    .filter(|s| s.status == Status::Fail)
                    .map(|s| s.name.as_str())
                    .collect();
                format!("{} failed", names.join(", "))
            }
        };
        format!("check failed: {what} ({passed} passed, {failed} failed, {skipped} skipped)")
    }

    /// The whole text report.
    pub fn render_text(&self) -> String {
        let mut text = String::new();
        for step in &self.steps {
            text.push_str(&step.line());
            text.push('\n');
        }
        text.push_str(&self.summary());
        text.push('\n');
        text
    }

    /// The whole report as `--json` prints it.
    pub fn to_json(&self) -> Value {
        json!({
            "ok": self.ok(),
            "target": self.target,
            "server_name": self.server_name,
            "problem": self.problem().map(Problem::id),
            "summary": self.summary(),
            "steps": self.steps.iter().map(Step::to_json).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(format_elapsed(Duration::from_micros(120)), "0.12 ms");
        assert_eq!(format_elapsed(Duration::from_millis(123)), "123.0 ms");
        assert_eq!(format_elapsed(Duration::from_millis(1500)), "1.50 s");
        assert_eq!(human(Duration::from_secs(42)), "42 s");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 120)), "3 h 2 min");
    }

    /// The names themselves are pinned by proxy/tests/check/ (container/entrypoint.sh reads them).
    #[test]
    fn step_names_are_distinct_and_pad_in_the_text_line() {
        let mut names: Vec<&str> = StepName::ALL.iter().map(|s| s.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), StepName::ALL.len());
        assert_eq!(format!("{:<6}|", StepName::Dns), "dns   |");
        let line = Step::skip(StepName::ClientCert, "x").line();
        assert_eq!(line, "— client-cert            x");
    }

    #[test]
    fn skipped_steps_name_the_failure() {
        let mut report = Report::new(false);
        report.push(Step::pass(StepName::Config, Duration::ZERO, "ok"));
        report.push(Step::skip(StepName::Credentials, "not used"));
        report.push(Step::problem(
            StepName::Dns,
            Duration::ZERO,
            Problem::Unreachable,
            "cannot resolve x",
            "fix it",
        ));
        report.skip_rest();
        assert!(!report.ok());
        assert_eq!(report.steps.len(), StepName::ALL.len());
        assert_eq!(report.steps[3].detail, "skipped: dns failed");
        assert_eq!(report.problem(), Some(Problem::Unreachable));
        assert!(report.summary().starts_with("check failed: unreachable"));
        let json = report.to_json();
        assert_eq!(json["problem"], "unreachable");
        assert_eq!(json["steps"][2]["status"], "fail");
        assert_eq!(json["steps"][3]["ms"], Value::Null);
        assert!(report.render_text().contains("✗ dns"));
    }
}
