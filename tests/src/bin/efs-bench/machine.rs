//! Figures beside the tables: the cipher's one-core ceiling and the proxy's multiplexing
//! curve.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use efs_proxy_tests::bench::{self, Flow};
use tokio::process::Command;

use crate::args::Args;
use crate::forwarder::{announced, proxy_args};
use crate::{IN_FLIGHT, MIB, SIZE};

/// One core's AES-128-GCM rate in MiB/s, from `openssl speed`.
pub(crate) async fn aes_gcm_ceiling() -> anyhow::Result<f64> {
    let out = Command::new("openssl")
        .args([
            "speed",
            "-evp",
            "aes-128-gcm",
            "-seconds",
            "2",
            "-bytes",
            "16384",
        ])
        .stderr(Stdio::null())
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| l.to_ascii_lowercase().starts_with("aes-128-gcm"))
        .context("no AES-128-GCM line from openssl speed")?;
    let kb: f64 = last
        .split_whitespace()
        .last()
        .and_then(|v| v.trim_end_matches('k').parse().ok())
        .context("odd openssl speed output")?;
    Ok(kb * 1000.0 / MIB)
}

/// The proxy's WRITE throughput with multiplexing allowed up to 1, 2 and 4 connections.
pub(crate) async fn multiplex_curve(
    target_bin: &Path,
    proxy_bin: &Path,
    dir: &Path,
    args: &Args,
) -> anyhow::Result<Vec<(usize, f64)>> {
    let mut curve = Vec::new();
    for n in [1, 2, 4] {
        let pki = dir.join(format!("mux{n}"));
        let target = announced(
            target_bin,
            &[
                "--pki-dir".into(),
                pki.display().to_string(),
                "--backend".into(),
                "bench".into(),
                "--scale-max".into(),
                n.to_string(),
                "--scale-threshold".into(),
                "1000000".into(),
            ],
        )
        .await?;
        let proxy = announced(proxy_bin, &proxy_args(target.addr, &pki, true)).await?;
        eprintln!("measuring efs-proxy with up to {n} connections ...");
        // Load long enough for the 3 s scale-up window, then measure.
        let measure_for = Duration::from_secs(args.seconds);
        bench::throughput(
            proxy.addr,
            Flow::Write,
            SIZE,
            IN_FLIGHT,
            Duration::from_secs(4) + measure_for,
        )
        .await?;
        let (w, wt) =
            bench::throughput(proxy.addr, Flow::Write, SIZE, IN_FLIGHT, measure_for).await?;
        curve.push((n, w as f64 / MIB / wt.as_secs_f64()));
    }
    Ok(curve)
}
