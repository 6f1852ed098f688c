//! `efs-bench`: the proxy against its baselines, in one run on one machine.
//!
//! Forwarders measured, each in front of the same release-built fake mount target (bench
//! responder: READ replies of the asked size, tiny WRITE replies):
//!
//! * `direct`: no forwarder (the floor);
//! * `socat`: a plain TCP forwarder;
//! * `stunnel`: a TLS client tunnel with the same certificates (TLS, no bind);
//! * `efs-proxy`: TLS, client certificate and bind.
//!
//! Figures: first call (connect + TLS + bind), sequential small-call latency (p50/p99),
//! 1 MiB WRITE and READ throughput with 16 calls in flight, CPU seconds per GiB of the
//! forwarder process, its RSS idle / under load / per idle client connection, the machine's
//! one-core AES-128-GCM rate (`openssl speed`) as the TLS ceiling, and the proxy's throughput
//! with 1, 2 and 4 multiplexed connections. Printed as a table and written as JSON.
//!
//! Before/after: `--baseline NAME=PATH` measures another `efs-proxy` binary (an earlier
//! build) in the same run, and `--rounds N` measures the proxies N times in alternation and
//! reports medians, so a change of a few percent is not lost in the machine's noise.
//! `tests/bench/compare.sh REV` builds REV and does both.
//!
//! Run it with `tests/bench/run.sh` (release build).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use efs_proxy_tests::SERVER_NAME;
use efs_proxy_tests::bench::{self, Flow};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Parser)]
#[command(
    name = "efs-bench",
    about = "efs-proxy against direct, socat and stunnel",
    // A later option wins (tests/bench/compare.sh passes defaults the caller can override).
    args_override_self = true
)]
struct Args {
    /// Seconds of each throughput measurement.
    #[arg(long, default_value_t = 4)]
    seconds: u64,
    /// Sequential calls of the latency measurement.
    #[arg(long, default_value_t = 3000)]
    calls: usize,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/efs-bench.json")]
    json: PathBuf,
    /// Skip the multiplexing curve.
    #[arg(long)]
    no_multiplex: bool,
    /// Measure only these forwarders (direct, socat, stunnel, efs-proxy); default: all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also measure another efs-proxy binary under this name (repeatable), e.g.
    /// `before=/tmp/efs-proxy-old`: before/after figures from one run.
    #[arg(long, value_name = "NAME=PATH", value_parser = parse_baseline)]
    baseline: Vec<(String, PathBuf)>,
    /// Measure efs-proxy and the baselines this many times, alternating, and report the
    /// median of each figure.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    rounds: u32,
}

fn parse_baseline(text: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PATH, got {text:?}"))?;
    let path = PathBuf::from(path);
    if name.is_empty() || !path.is_file() {
        return Err(format!(
            "{text:?}: expected NAME=PATH of an efs-proxy binary"
        ));
    }
    Ok((name.to_string(), path))
}

impl Args {
    fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}

const MIB: f64 = 1024.0 * 1024.0;
const SIZE: usize = 1024 * 1024;
const IN_FLIGHT: usize = 16;

/// A child process killed on drop, with the address it serves.
struct Service {
    child: Child,
    addr: SocketAddr,
}

impl Service {
    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found: build with `cargo build --release --workspace --bins`",
            path.display()
        );
    }
    Ok(path)
}

/// Starts a program that prints `listening on ADDR` on stdout.
async fn announced(program: &Path, args: &[String]) -> anyhow::Result<Service> {
    let mut child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .context("no listening line")??
        .context("exited")?;
    let addr = line
        .strip_prefix("listening on ")
        .context("odd first line")?
        .parse()?;
    Ok(Service { child, addr })
}

/// Starts a program that listens on `addr` without saying so; waits for the port.
async fn listening(program: &str, args: &[String], addr: SocketAddr) -> anyhow::Result<Service> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {program} (apt-get install it)"))?;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(Service { child, addr });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("{program} did not listen on {addr}")
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Figures of one forwarder.
#[derive(Default, Debug, Clone)]
struct Figures {
    name: String,
    first_call_ms: f64,
    p50_us: f64,
    p99_us: f64,
    write_mib_s: f64,
    read_mib_s: f64,
    cpu_s_per_gib: Option<f64>,
    rss_idle_kib: Option<u64>,
    rss_load_kib: Option<u64>,
    idle_conn_kib: Option<f64>,
}

async fn measure(
    name: &str,
    addr: SocketAddr,
    process: Option<u32>,
    args: &Args,
) -> anyhow::Result<Figures> {
    measure_one(name, addr, process, args)
        .await
        .with_context(|| format!("measuring {name} on {addr}"))
}

async fn measure_one(
    name: &str,
    addr: SocketAddr,
    process: Option<u32>,
    args: &Args,
) -> anyhow::Result<Figures> {
    let mut f = Figures {
        name: name.to_string(),
        ..Default::default()
    };
    let mut firsts = Vec::new();
    for _ in 0..11 {
        firsts.push(bench::first_call(addr).await?);
    }
    firsts.sort();
    f.first_call_ms = firsts[firsts.len() / 2].as_secs_f64() * 1000.0;
    if let Some(pid) = process {
        f.rss_idle_kib = Some(bench::memory_kib(pid)?.0);
    }

    let mut times = bench::latency(addr, 300, args.calls).await?;
    times.sort_unstable();
    f.p50_us = bench::percentile_us(&times, 0.50);
    f.p99_us = bench::percentile_us(&times, 0.99);

    let cpu_before = process.map(bench::cpu_time).transpose()?;
    let duration = Duration::from_secs(args.seconds);
    let (w, wt) = bench::throughput(addr, Flow::Write, SIZE, IN_FLIGHT, duration).await?;
    let (r, rt) = bench::throughput(addr, Flow::Read, SIZE, IN_FLIGHT, duration).await?;
    f.write_mib_s = w as f64 / MIB / wt.as_secs_f64();
    f.read_mib_s = r as f64 / MIB / rt.as_secs_f64();
    if let (Some(pid), Some(before)) = (process, cpu_before) {
        // Let forked children (socat) exit and be reaped, so their time is counted.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cpu = bench::cpu_time(pid)? - before;
        f.cpu_s_per_gib = Some(cpu.as_secs_f64() / ((w + r) as f64 / (1024.0 * MIB)));
        f.rss_load_kib = Some(bench::memory_kib(pid)?.1);
        let before = bench::memory_kib(pid)?.0;
        let open = bench::idle_connections(addr, 100).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = bench::memory_kib(pid)?.0;
        f.idle_conn_kib = Some(after.saturating_sub(before) as f64 / 100.0);
        drop(open);
    }
    Ok(f)
}

/// The median of each figure over rounds of one forwarder.
fn median(rounds: &[Figures]) -> Figures {
    fn mid(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    let of = |get: fn(&Figures) -> f64| mid(rounds.iter().map(get).collect());
    let of_opt = |get: fn(&Figures) -> Option<f64>| {
        let v: Option<Vec<f64>> = rounds.iter().map(get).collect();
        v.map(mid)
    };
    Figures {
        name: rounds[0].name.clone(),
        first_call_ms: of(|f| f.first_call_ms),
        p50_us: of(|f| f.p50_us),
        p99_us: of(|f| f.p99_us),
        write_mib_s: of(|f| f.write_mib_s),
        read_mib_s: of(|f| f.read_mib_s),
        cpu_s_per_gib: of_opt(|f| f.cpu_s_per_gib),
        rss_idle_kib: of_opt(|f| f.rss_idle_kib.map(|k| k as f64)).map(|k| k as u64),
        rss_load_kib: of_opt(|f| f.rss_load_kib.map(|k| k as f64)).map(|k| k as u64),
        idle_conn_kib: of_opt(|f| f.idle_conn_kib),
    }
}

/// One core's AES-128-GCM rate in MiB/s, from `openssl speed`.
async fn aes_gcm_ceiling() -> anyhow::Result<f64> {
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    let target_bin = sibling("fake-mount-target")?;
    let proxy_bin = sibling("efs-proxy")?;
    let s = |v: &str| v.to_string();
    let path = |p: &Path| p.display().to_string();

    let tls_target = announced(
        &target_bin,
        &[s("--pki-dir"), path(&pki), s("--backend"), s("bench")],
    )
    .await?;
    let plain_pki = dir.path().join("plain");
    let plain_target = announced(
        &target_bin,
        &[
            s("--pki-dir"),
            path(&plain_pki),
            s("--backend"),
            s("bench"),
            s("--plaintext"),
        ],
    )
    .await?;

    let mut results = Vec::new();
    if args.wants("direct") {
        eprintln!("measuring direct ...");
        results.push(measure("direct", plain_target.addr, None, &args).await?);
    }

    if args.wants("socat") {
        let socat_addr = free_addr()?;
        let socat = listening(
            "socat",
            &[
                format!(
                    "TCP-LISTEN:{},bind=127.0.0.1,fork,reuseaddr,nodelay",
                    socat_addr.port()
                ),
                format!("TCP:{},nodelay", plain_target.addr),
            ],
            socat_addr,
        )
        .await?;
        eprintln!("measuring socat ...");
        results.push(measure("socat", socat.addr, Some(socat.pid()), &args).await?);
        drop(socat);
    }

    if args.wants("stunnel") {
        let stunnel_addr = free_addr()?;
        let conf = dir.path().join("stunnel.conf");
        std::fs::write(
            &conf,
            format!(
                "foreground = yes\npid =\nsyslog = no\ndebug = 0\nsocket = l:TCP_NODELAY=1\n\
             socket = r:TCP_NODELAY=1\n[efs]\nclient = yes\naccept = {stunnel_addr}\n\
             connect = {}\ncert = {}\nkey = {}\nCAfile = {}\nverifyChain = yes\n\
             checkHost = {SERVER_NAME}\nsni = {SERVER_NAME}\n",
                tls_target.addr,
                pki.join("client.pem").display(),
                pki.join("client.key").display(),
                pki.join("ca.pem").display(),
            ),
        )?;
        let stunnel = listening("stunnel4", &[path(&conf)], stunnel_addr).await?;
        eprintln!("measuring stunnel ...");
        results.push(measure("stunnel", stunnel.addr, Some(stunnel.pid()), &args).await?);
        drop(stunnel);
    }

    let proxy_args = |target: SocketAddr, scale: bool| {
        let mut a = vec![
            s("run"),
            s("--listen"),
            s("127.0.0.1:0"),
            s("--target"),
            target.to_string(),
            s("--server-name"),
            s(SERVER_NAME),
            s("--ca-file"),
            path(&pki.join("ca.pem")),
            s("--cert"),
            path(&pki.join("client.pem")),
            s("--key"),
            path(&pki.join("client.key")),
            s("--log-level"),
            s("warn"),
        ];
        if !scale {
            a.push(s("--no-scale-up"));
        }
        a
    };
    // The proxies (this build and any baselines), each in a fresh process per round,
    // alternating so that drifts of the machine's load hit all of them alike.
    let mut proxies = Vec::new();
    if args.wants("efs-proxy") {
        proxies.push(("efs-proxy".to_string(), proxy_bin.clone()));
    }
    proxies.extend(args.baseline.iter().cloned());
    let mut rounds: Vec<Vec<Figures>> = vec![Vec::new(); proxies.len()];
    for round in 1..=args.rounds {
        for (i, (name, bin)) in proxies.iter().enumerate() {
            let proxy = announced(bin, &proxy_args(tls_target.addr, false)).await?;
            eprintln!("measuring {name} (round {round} of {}) ...", args.rounds);
            rounds[i].push(measure(name, proxy.addr, Some(proxy.pid()), &args).await?);
        }
    }
    results.extend(rounds.iter().map(|r| median(r)));

    let ceiling = aes_gcm_ceiling().await.unwrap_or(f64::NAN);

    let mut curve = Vec::new();
    if !args.no_multiplex {
        for n in [1, 2, 4] {
            let target = announced(
                &target_bin,
                &[
                    s("--pki-dir"),
                    path(&dir.path().join(format!("mux{n}"))),
                    s("--backend"),
                    s("bench"),
                    s("--scale-max"),
                    n.to_string(),
                    s("--scale-threshold"),
                    s("1000000"),
                ],
            )
            .await?;
            // Same PKI as the proxy expects: point the proxy at this target's files.
            let mux_pki = dir.path().join(format!("mux{n}"));
            let mut a = proxy_args(target.addr, true);
            for (flag, file) in [
                ("--ca-file", "ca.pem"),
                ("--cert", "client.pem"),
                ("--key", "client.key"),
            ] {
                let i = a.iter().position(|x| x == flag).context("flag")?;
                a[i + 1] = path(&mux_pki.join(file));
            }
            let proxy = announced(&proxy_bin, &a).await?;
            eprintln!("measuring efs-proxy with up to {n} connections ...");
            // Load long enough for the 3 s scale-up window, then measure.
            let warm = Duration::from_secs(4);
            let measure_for = Duration::from_secs(args.seconds);
            let load = async {
                let (warm_bytes, _) =
                    bench::throughput(proxy.addr, Flow::Write, SIZE, IN_FLIGHT, warm + measure_for)
                        .await?;
                anyhow::Ok(warm_bytes)
            };
            let total = load.await?;
            let _ = total;
            let (w, wt) =
                bench::throughput(proxy.addr, Flow::Write, SIZE, IN_FLIGHT, measure_for).await?;
            curve.push((n, w as f64 / MIB / wt.as_secs_f64()));
        }
    }

    report(&results, &args, ceiling, &curve)
}

fn report(
    results: &[Figures],
    args: &Args,
    ceiling: f64,
    curve: &[(usize, f64)],
) -> anyhow::Result<()> {
    let json_path = args.json.as_path();
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let optk = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{:.1}", v as f64 / 1024.0));
    println!(
        "\n{:<10} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9}",
        "",
        "first ms",
        "p50 µs",
        "p99 µs",
        "WRITE",
        "READ",
        "CPU s/GiB",
        "RSS idle",
        "RSS load",
        "KiB/conn"
    );
    println!(
        "{:<10} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9}",
        "", "", "", "", "MiB/s", "MiB/s", "", "MiB", "MiB", "idle"
    );
    for f in results {
        println!(
            "{:<10} {:>9.2} {:>8.1} {:>8.1} {:>9.0} {:>9.0} {:>9} {:>8} {:>8} {:>9}",
            f.name,
            f.first_call_ms,
            f.p50_us,
            f.p99_us,
            f.write_mib_s,
            f.read_mib_s,
            opt(f.cpu_s_per_gib),
            optk(f.rss_idle_kib),
            optk(f.rss_load_kib),
            opt(f.idle_conn_kib),
        );
    }
    if args.rounds > 1 {
        println!("(efs-proxy rows: medians of {} rounds)", args.rounds);
    }
    let get = |name: &str| results.iter().find(|f| f.name == name);
    let comparisons: Vec<_> = match get("efs-proxy") {
        Some(after) => args
            .baseline
            .iter()
            .filter_map(|(name, _)| get(name))
            .map(|before| before_after(before, after))
            .collect(),
        None => Vec::new(),
    };
    let write_json = |ratios: serde_json::Value| -> anyhow::Result<()> {
        let figures: Vec<_> = results.iter().map(Figures::to_json).collect();
        let doc = json!({
            "figures": figures,
            "rounds": args.rounds,
            "aes_128_gcm_one_core_mib_s": ceiling,
            "ratios": ratios,
            "before_after": comparisons,
            "multiplex_write_mib_s": curve.iter().map(|(n, m)| json!({"connections": n, "mib_s": m})).collect::<Vec<_>>(),
        });
        if let Some(parent) = json_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(json_path, serde_json::to_string_pretty(&doc)?)?;
        println!("\nJSON: {}", json_path.display());
        Ok(())
    };
    let (Some(direct), Some(socat), Some(stunnel), Some(proxy)) = (
        get("direct"),
        get("socat"),
        get("stunnel"),
        get("efs-proxy"),
    ) else {
        println!("\n(ratios need all four forwarders; --only measured a subset)");
        return write_json(serde_json::Value::Null);
    };
    let ratio = |a: f64, b: f64| a / b;
    let added_proxy = proxy.p50_us - direct.p50_us;
    let added_socat = socat.p50_us - direct.p50_us;
    println!("\none-core AES-128-GCM (openssl speed): {ceiling:.0} MiB/s");
    println!("\nefs-proxy, as ratios (targets of issue 6 in brackets):");
    println!(
        "  WRITE  {:.2}x stunnel [>= 1.5]  {:.2}x socat [>= 0.8]  {:.2}x ceiling",
        ratio(proxy.write_mib_s, stunnel.write_mib_s),
        ratio(proxy.write_mib_s, socat.write_mib_s),
        ratio(proxy.write_mib_s, ceiling)
    );
    println!(
        "  READ   {:.2}x stunnel [>= 1.5]  {:.2}x socat [>= 0.8]  {:.2}x ceiling",
        ratio(proxy.read_mib_s, stunnel.read_mib_s),
        ratio(proxy.read_mib_s, socat.read_mib_s),
        ratio(proxy.read_mib_s, ceiling)
    );
    println!(
        "  added latency p50 {added_proxy:.1} µs vs socat's {added_socat:.1} µs [<= socat + 10 µs]"
    );
    if let (Some(p), Some(s)) = (proxy.cpu_s_per_gib, stunnel.cpu_s_per_gib) {
        println!("  CPU per GiB {:.2}x stunnel's [<= 0.6]", p / s);
    }
    println!(
        "  RSS under load {} MiB [<= 16]; idle connection {} KiB [<= 64]; first call {:.2} ms [<= 5]",
        optk(proxy.rss_load_kib),
        opt(proxy.idle_conn_kib),
        proxy.first_call_ms
    );
    if !curve.is_empty() {
        println!("\nefs-proxy WRITE with multiplexing (connections: MiB/s):");
        for (n, mibs) in curve {
            println!("  {n}: {mibs:.0}");
        }
    }

    write_json(json!({
            "write_vs_stunnel": ratio(proxy.write_mib_s, stunnel.write_mib_s),
            "write_vs_socat": ratio(proxy.write_mib_s, socat.write_mib_s),
            "read_vs_stunnel": ratio(proxy.read_mib_s, stunnel.read_mib_s),
            "read_vs_socat": ratio(proxy.read_mib_s, socat.read_mib_s),
            "write_vs_ceiling": ratio(proxy.write_mib_s, ceiling),
            "added_latency_p50_us": added_proxy,
            "socat_added_latency_p50_us": added_socat,
            "cpu_per_gib_vs_stunnel": proxy.cpu_s_per_gib.zip(stunnel.cpu_s_per_gib).map(|(p, s)| p / s),
    }))
}

impl Figures {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "first_call_ms": self.first_call_ms,
            "latency_p50_us": self.p50_us,
            "latency_p99_us": self.p99_us,
            "write_mib_s": self.write_mib_s,
            "read_mib_s": self.read_mib_s,
            "cpu_s_per_gib": self.cpu_s_per_gib,
            "rss_idle_kib": self.rss_idle_kib,
            "rss_load_kib": self.rss_load_kib,
            "idle_connection_kib": self.idle_conn_kib,
        })
    }
}

/// Prints and returns this build's figures as ratios to a baseline's (after / before).
fn before_after(before: &Figures, after: &Figures) -> serde_json::Value {
    let r = |a: f64, b: f64| a / b;
    let cpu = after
        .cpu_s_per_gib
        .zip(before.cpu_s_per_gib)
        .map(|(a, b)| a / b);
    let rss = after
        .rss_load_kib
        .zip(before.rss_load_kib)
        .map(|(a, b)| a as f64 / b as f64);
    println!(
        "\nefs-proxy / {}: WRITE {:.3}x  READ {:.3}x  p50 {:.3}x  CPU per GiB {}  RSS load {}",
        before.name,
        r(after.write_mib_s, before.write_mib_s),
        r(after.read_mib_s, before.read_mib_s),
        r(after.p50_us, before.p50_us),
        cpu.map_or("-".into(), |c| format!("{c:.3}x")),
        rss.map_or("-".into(), |c| format!("{c:.3}x")),
    );
    json!({
        "baseline": before.name,
        "write": r(after.write_mib_s, before.write_mib_s),
        "read": r(after.read_mib_s, before.read_mib_s),
        "latency_p50": r(after.p50_us, before.p50_us),
        "cpu_per_gib": cpu,
        "rss_load": rss,
    })
}
