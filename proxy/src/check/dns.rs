//! The DNS step: every address of the target, or why there is none.

use std::net::SocketAddr;
use std::time::Instant;

use serde_json::json;
use tokio::time::timeout;

use super::{Plan, Problem, Report, Step, StepName, parse_mount_target_name};
use crate::upstream::dial::host_of;

/// Resolves the target (an address needs no lookup); `None` stops the run.
pub(super) async fn step(plan: &Plan, report: &mut Report) -> Option<Vec<SocketAddr>> {
    let start = Instant::now();
    if let Ok(addr) = plan.target.parse::<SocketAddr>() {
        report.push(
            Step::pass(
                StepName::Dns,
                start.elapsed(),
                format!("{} is an address: no lookup", plan.target),
            )
            .with_data(json!({ "addresses": [addr.to_string()] })),
        );
        return Some(vec![addr]);
    }
    let host = host_of(&plan.target);
    let unreachable = |detail: String, fix: String| {
        Step::problem(
            StepName::Dns,
            start.elapsed(),
            Problem::Unreachable,
            detail,
            fix,
        )
    };
    let looked_up = timeout(plan.connect_timeout, tokio::net::lookup_host(&plan.target)).await;
    let addrs: Vec<SocketAddr> = match looked_up {
        Err(_) => {
            let limit = plan.connect_timeout;
            report.push(unreachable(
                format!("the DNS lookup of {host} did not finish within {limit:?}"),
                fix(plan, host) + "; and that this host's resolver answers",
            ));
            return None;
        }
        Ok(Err(e)) => {
            report.push(unreachable(
                format!("cannot resolve {host}: {e}"),
                fix(plan, host),
            ));
            return None;
        }
        Ok(Ok(addrs)) => addrs.collect(),
    };
    if addrs.is_empty() {
        report.push(unreachable(
            format!("{host} resolved to no addresses"),
            fix(plan, host),
        ));
        return None;
    }
    let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    let detail = format!(
        "{host} → {} ({} address{})",
        list.join(", "),
        list.len(),
        if list.len() == 1 { "" } else { "es" }
    );
    report.push(
        Step::pass(StepName::Dns, start.elapsed(), detail)
            .with_data(json!({ "host": host, "addresses": list })),
    );
    Some(addrs)
}

/// Where a resolvable name comes from, and that a mount target's own name resolves only in
/// its VPC.
fn fix(plan: &Plan, host: &str) -> String {
    format!(
        "check the host name: an NLB's DNS name (the stack's NlbDns output) as --target \
         NLB_DNS:2049; a mount target's own name ({{az_id}}.{{fs_id}}.s3files.{{region}}.on.aws) \
         resolves only inside its VPC, so from elsewhere pass --target with the NLB{}",
        if plan.expected.is_some() && parse_mount_target_name(host).is_some() {
            " (this name was derived from --fs-id, --region and --az-id)"
        } else {
            ""
        }
    )
}
