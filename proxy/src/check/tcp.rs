//! The TCP step: every address at once, one line each; the first to connect (in RFC 8305
//! order) carries the later steps.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{Plan, Problem, Report, Step, StepName};
use crate::upstream::dial::interleave_families;

/// Connects to every address; `None` when none answered.
pub(super) async fn step(
    plan: &Plan,
    addrs: Vec<SocketAddr>,
    report: &mut Report,
) -> Option<(TcpStream, SocketAddr)> {
    let limit = plan.connect_timeout;
    let attempts = interleave_families(addrs)
        .into_iter()
        .map(|addr| async move {
            let start = Instant::now();
            let result = timeout(limit, TcpStream::connect(addr)).await;
            (addr, result, start.elapsed())
        });
    let results = futures_util::future::join_all(attempts).await;
    let mut chosen = None;
    let total = results.len();
    for (addr, result, elapsed) in results {
        let step = match result {
            Ok(Ok(stream)) => {
                let note = if chosen.is_none() && total > 1 {
                    " (used for the next steps)"
                } else {
                    ""
                };
                if chosen.is_none() {
                    let _ = stream.set_nodelay(true);
                    chosen = Some((stream, addr));
                }
                Step::pass(StepName::Tcp, elapsed, format!("{addr} connected{note}"))
            }
            Ok(Err(e)) => refused_or_failed(addr, &e, elapsed),
            Err(_) => Step::problem(
                StepName::Tcp,
                elapsed,
                Problem::Unreachable,
                format!(
                    "{addr} did not answer within {limit:?}: packets to TCP {} are dropped",
                    addr.port()
                ),
                "the NLB's (or mount target's) security group must allow TCP 2049 from this host \
                 (the stack's allowedCidr must include this host's public IP); check firewalls and \
                 network ACLs on the way, and that --target is the NLB's DNS name",
            ),
        };
        report.push(step.with_data(json!({ "address": addr.to_string() })));
    }
    chosen
}

/// A connection that failed at once: refused (nothing listens) or any other error.
fn refused_or_failed(addr: SocketAddr, e: &io::Error, elapsed: Duration) -> Step {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        return Step::problem(
            StepName::Tcp,
            elapsed,
            Problem::Unreachable,
            format!(
                "{addr} refused the connection: nothing listens on port {} there",
                addr.port()
            ),
            "check --target's host and port (the NLB's TCP listener or the mount target, port \
             2049); for an NLB, that its listener on 2049 exists and forwards to the mount target",
        );
    }
    Step::problem(
        StepName::Tcp,
        elapsed,
        Problem::Unreachable,
        format!("connecting to {addr} failed: {e}"),
        "check the route to the target (VPN, VPC peering, internet access) and --target",
    )
}
