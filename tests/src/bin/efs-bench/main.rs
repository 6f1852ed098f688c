//! `efs-bench`: the proxy against its baselines, one table per client pattern, in one run on
//! one machine.
//!
//! Forwarders, each in front of the same release-built fake mount target (bench responder:
//! READ replies of the asked size, tiny WRITE replies), each started afresh for every
//! measurement, in an order rotated from round to round:
//!
//! * `direct`: no forwarder (the floor);
//! * `socat`: a plain TCP forwarder with 128 KiB buffers (`-b 131072`, its best setting: the
//!   fair floor of a forwarder); `socat-8k`: its default 8 KiB buffer (client pattern `rust`
//!   only, for comparison with earlier runs);
//! * `stunnel`: a TLS client tunnel with the same certificates (TLS, no bind; TCP_NODELAY on
//!   both sockets);
//! * `efs-proxy`: TLS, client certificate and bind; and any `--baseline` builds of it.
//!
//! Client patterns (`--patterns`), one table each:
//!
//! * `rust`: the tokio client of `efs_proxy_tests::bench` (`write_all` per call, replies
//!   through `FramedRead`), 16 calls of 1 MiB in flight;
//! * `bulk`: a blocking client that writes each call in one `write` and reads replies with
//!   large reads into a buffer that grows to hold the record (the pattern of a Python
//!   `sendall` / `recv_into` client), 16 in flight;
//! * `trickle`: a blocking client that writes each call in 16 KiB pieces and reads replies
//!   4 KiB at a time (`--trickle-send`, `--trickle-recv`), 16 in flight;
//! * `conc4`, `conc16`: 4 and 16 connections of the `rust` client at once (`nconnect=4` or
//!   several mounts), `--conc-in-flight` calls each; totals;
//! * `libnfs`: a real user-space NFS client, `nfs-cp` (WRITE) and `nfs-cat` (READ) of
//!   Debian's libnfs-utils, copying a file of `--nfs-mib` to and from nfs-ganesha
//!   (`--nfs-server`, NFSv3: libnfs 4.0's NFSv4 WRITE fails to encode) through each
//!   forwarder; behind the forwarders the fake mount target relays to ganesha (TLS for
//!   stunnel and efs-proxy, plaintext for socat and direct). `tests/bench/run.sh` starts
//!   ganesha for it.
//!
//! Figures per pattern: WRITE and READ MiB/s (1 MiB calls), CPU seconds per GiB of the
//! forwarder process in each direction (from `/proc`, children included), its peak RSS, and
//! the p50/p99 of sequential 128-byte calls made with the pattern's client; for `rust` also
//! the first call (connect + TLS + bind), RSS idle and per idle connection. Ratios are the
//! medians of per-round ratios (each round measures every forwarder back to back), and each
//! target of issue 17 is checked per pattern: PASS or MISS.
//!
//! Before/after: `--baseline NAME=PATH` measures another `efs-proxy` binary in the same run;
//! `tests/bench/compare.sh REV` builds REV and does that.
//!
//! Run it with `tests/bench/run.sh` (release build).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use serde_json::json;

mod args;
mod floor;
mod forwarder;
mod machine;
mod measure;
mod pattern;
mod report;

use args::Args;
use forwarder::{Forwarder, Kind, Upstream, sibling};
use machine::{CIPHER, cipher_s_per_gib, multiplex_curve};
use measure::{Nfs, measure};
use pattern::Pattern;
use report::{Check, PatternResult};

pub(crate) const MIB: f64 = 1024.0 * 1024.0;
pub(crate) const GIB: f64 = 1024.0 * MIB;
pub(crate) const SIZE: usize = 1024 * 1024;
pub(crate) const IN_FLIGHT: usize = 16;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse().quickened();
    let patterns: Vec<Pattern> = args
        .patterns
        .iter()
        .map(|p| Pattern::parse(p))
        .collect::<anyhow::Result<_>>()?;
    let dir = tempfile::tempdir()?;
    let target_bin = sibling("fake-mount-target")?;
    let proxy_bin = sibling("efs-proxy")?;
    let forwarders = forwarders(&args, &proxy_bin);

    // The bench responder; for libnfs also a relay to ganesha and the file to copy.
    let bench_up = Upstream::start(&target_bin, dir.path(), "pki", "bench").await?;
    let libnfs = if patterns.contains(&Pattern::Libnfs) {
        let nfs = Nfs::prepare(&args)?;
        let backend = nfs.server.to_string();
        let relay = Upstream::start(&target_bin, dir.path(), "relay-pki", &backend).await?;
        Some((relay, nfs))
    } else {
        None
    };

    let cipher = cipher_s_per_gib();
    let started = Instant::now();
    let mut results = Vec::new();
    for pattern in &patterns {
        let (up, nfs) = match (pattern, &libnfs) {
            (Pattern::Libnfs, Some((relay, nfs))) => (relay, Some(nfs)),
            _ => (&bench_up, None),
        };
        let run = run_pattern(*pattern, &forwarders, up, nfs, &args, dir.path(), started);
        let mut result = run.await?;
        result.cipher_s_per_gib = cipher;
        results.push(result);
    }
    drop(libnfs);

    let curve = if args.no_multiplex || !forwarders.iter().any(|f| f.name == "efs-proxy") {
        Vec::new()
    } else {
        multiplex_curve(&target_bin, &proxy_bin, dir.path(), &args).await?
    };

    println!(
        "\nefs-bench: {} round(s), {} s per throughput phase, {} latency calls; {:.0} s",
        args.rounds,
        args.seconds,
        args.calls,
        started.elapsed().as_secs_f64()
    );
    let tables: Vec<_> = results
        .iter()
        .map(|r| r.print(&args, &args.baseline))
        .collect();
    println!(
        "\none-core {CIPHER} (ring, 16 KiB records): {:.0} MiB/s = {cipher:.3} s/GiB",
        1024.0 / cipher
    );
    if !curve.is_empty() {
        let points: Vec<String> = curve.iter().map(|(n, m)| format!("{n}: {m:.0}")).collect();
        println!(
            "efs-proxy WRITE with multiplexing (connections: MiB/s): {}",
            points.join(", ")
        );
    }
    print_targets(&results, &args);

    let doc = json!({
        "rounds": args.rounds,
        "seconds": args.seconds,
        "cipher": CIPHER,
        "cipher_one_core_s_per_gib": cipher,
        "patterns": tables,
        "multiplex_write_mib_s": curve.iter().map(|(n, m)| json!({"connections": n, "mib_s": m})).collect::<Vec<_>>(),
    });
    if let Some(parent) = args.json.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&doc)?)?;
    println!("\nJSON: {}", args.json.display());
    Ok(())
}

/// The forwarders to measure: the fixed set and every `--baseline`, less those `--only`
/// leaves out (baselines always stay).
fn forwarders(args: &Args, proxy_bin: &Path) -> Vec<Forwarder> {
    let fixed = [
        ("direct", Kind::Direct),
        ("socat", Kind::Socat { buffer: 131_072 }),
        ("socat-8k", Kind::Socat { buffer: 8192 }),
        ("stunnel", Kind::Stunnel),
        (
            "efs-proxy",
            Kind::Proxy {
                bin: proxy_bin.to_path_buf(),
            },
        ),
    ];
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let mut forwarders: Vec<Forwarder> = fixed
        .into_iter()
        .filter(|(name, _)| wanted(name))
        .map(|(name, kind)| Forwarder {
            name: name.into(),
            kind,
        })
        .collect();
    forwarders.extend(args.baseline.iter().map(|(name, bin)| Forwarder {
        name: name.clone(),
        kind: Kind::Proxy { bin: bin.clone() },
    }));
    forwarders
}

/// Every forwarder under one pattern, `--rounds` times, in an order rotated each round so
/// that no forwarder always runs first (or right after the same one).
async fn run_pattern(
    pattern: Pattern,
    forwarders: &[Forwarder],
    up: &Upstream,
    nfs: Option<&Nfs>,
    args: &Args,
    scratch: &Path,
    started: Instant,
) -> anyhow::Result<PatternResult> {
    let fwds: Vec<&Forwarder> = forwarders
        .iter()
        .filter(|f| pattern == Pattern::Rust || f.name != "socat-8k")
        .collect();
    let mut result = PatternResult {
        pattern,
        order: fwds.iter().map(|f| f.name.clone()).collect(),
        samples: BTreeMap::new(),
        cipher_s_per_gib: f64::NAN,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
    };
    for round in 0..args.rounds {
        for i in 0..fwds.len() {
            let fwd = fwds[(i + round as usize) % fwds.len()];
            eprintln!(
                "[{:>4.0} s] {}: {} (round {} of {}) ...",
                started.elapsed().as_secs_f64(),
                pattern.name(),
                fwd.name,
                round + 1,
                args.rounds
            );
            let sample = measure(pattern, fwd, up, args, nfs, scratch, round)
                .await
                .with_context(|| format!("pattern {}, {}", pattern.name(), fwd.name))?;
            let samples = result.samples.entry(fwd.name.clone()).or_default();
            samples.push(sample);
        }
    }
    Ok(result)
}

/// Every target on every pattern, in one table per proxy build.
fn print_targets(results: &[PatternResult], args: &Args) {
    let mut proxies = vec!["efs-proxy".to_string()];
    proxies.extend(args.baseline.iter().map(|(n, _)| n.clone()));
    for proxy in &proxies {
        let summaries: Vec<(String, Vec<Check>)> = results
            .iter()
            .map(|r| (r.pattern.name(), r.checks(proxy)))
            .collect();
        let Some((_, first)) = summaries.iter().find(|(_, c)| !c.is_empty()) else {
            continue;
        };
        println!("\ntargets of issue 17 per client pattern ({proxy}):");
        print!("{:<9}", "");
        for c in first {
            print!(" {:>13}", c.name);
        }
        println!();
        for (name, checks) in &summaries {
            print!("{name:<9}");
            for c in checks {
                let v = c.value.map_or("-".to_string(), |v| format!("{v:.2}"));
                print!(" {:>13}", format!("{v} {}", c.short_verdict()));
            }
            println!();
        }
    }
}
