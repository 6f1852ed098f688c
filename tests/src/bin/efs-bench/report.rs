//! Medians over rounds, the per-pattern tables, the checked targets and their JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::json;

use crate::args::Args;
use crate::floor::Floor;
use crate::measure::{CpuSplit, Sample};
use crate::pattern::Pattern;

pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// The median of each figure over the rounds of one forwarder.
pub(crate) fn median_sample(rounds: &[Sample]) -> Sample {
    let of = |get: fn(&Sample) -> Option<f64>| median(rounds.iter().filter_map(get).collect());
    Sample {
        first_call_ms: of(|s| s.first_call_ms),
        p50_us: of(|s| s.p50_us),
        p99_us: of(|s| s.p99_us),
        write_mib_s: of(|s| Some(s.write_mib_s)).unwrap_or(f64::NAN),
        read_mib_s: of(|s| Some(s.read_mib_s)).unwrap_or(f64::NAN),
        cpu_write: of(|s| s.cpu_write),
        cpu_read: of(|s| s.cpu_read),
        split_write: median_split(rounds.iter().map(|s| &s.split_write)),
        split_read: median_split(rounds.iter().map(|s| &s.split_read)),
        rss_idle_kib: of(|s| s.rss_idle_kib),
        rss_peak_kib: of(|s| s.rss_peak_kib),
        idle_conn_kib: of(|s| s.idle_conn_kib),
        profile_write: median_map(rounds.iter().map(|s| &s.profile_write)),
        profile_read: median_map(rounds.iter().map(|s| &s.profile_read)),
    }
}

/// The median of each figure of a [`CpuSplit`] over rounds.
fn median_split<'a>(splits: impl Iterator<Item = &'a CpuSplit> + Clone) -> CpuSplit {
    let of = |get: fn(&CpuSplit) -> Option<f64>| median(splits.clone().filter_map(get).collect());
    CpuSplit {
        forwarder_system: of(|s| s.forwarder_system),
        target: of(|s| s.target),
        machine: of(|s| s.machine),
        cores: of(|s| s.cores),
    }
}

impl CpuSplit {
    fn to_json(self) -> serde_json::Value {
        json!({
            "forwarder_system_s_per_gib": self.forwarder_system,
            "mount_target_s_per_gib": self.target,
            "machine_s_per_gib": self.machine,
            "busy_cores": self.cores,
        })
    }
}

pub(crate) fn median_map<'a>(
    maps: impl Iterator<Item = &'a BTreeMap<String, f64>>,
) -> BTreeMap<String, f64> {
    let mut all: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for map in maps {
        for (k, v) in map {
            all.entry(k.clone()).or_default().push(*v);
        }
    }
    all.into_iter()
        .filter_map(|(k, v)| median(v).map(|m| (k, m)))
        .collect()
}

impl Sample {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        json!({
            "first_call_ms": self.first_call_ms,
            "latency_p50_us": self.p50_us,
            "latency_p99_us": self.p99_us,
            "write_mib_s": self.write_mib_s,
            "read_mib_s": self.read_mib_s,
            "cpu_s_per_gib_write": self.cpu_write,
            "cpu_s_per_gib_read": self.cpu_read,
            "cpu_split_write": self.split_write.to_json(),
            "cpu_split_read": self.split_read.to_json(),
            "rss_idle_kib": self.rss_idle_kib,
            "rss_peak_kib": self.rss_peak_kib,
            "idle_connection_kib": self.idle_conn_kib,
            "perf_per_gib_write": self.profile_write,
            "perf_per_gib_read": self.profile_read,
        })
    }
}

/// One checked target of a pattern.
pub(crate) struct Check {
    pub(crate) name: &'static str,
    pub(crate) value: Option<f64>,
    pub(crate) text: String,
    pub(crate) pass: Option<bool>,
    /// The best any TLS forwarder could do here ([`Floor`]) and whether that meets the
    /// target: a missed target whose bound does not is out of reach on this machine.
    pub(crate) bound: Option<(f64, bool)>,
}

impl Check {
    /// PASS, MISS, OUT OF REACH (missed, and no TLS forwarder could meet it here) or n/a.
    pub(crate) fn verdict(&self) -> &'static str {
        match (self.pass, self.bound) {
            (Some(true), _) => "PASS",
            (Some(false), Some((_, false))) => "OUT OF REACH",
            (Some(false), _) => "MISS",
            (None, _) => "n/a",
        }
    }

    /// The verdict in at most four letters, for the summary grid.
    pub(crate) fn short_verdict(&self) -> &'static str {
        match self.verdict() {
            "OUT OF REACH" => "OUT",
            v => v,
        }
    }

    /// The target's text with the floor's bound after it.
    fn with_bound(mut self, unit: &str) -> Check {
        if let Some((bound, _)) = self.bound {
            self.text = format!("{} (floor {bound:.2}{unit})", self.text);
        }
        self
    }
}

/// Results of one pattern: every forwarder's samples, round by round.
pub(crate) struct PatternResult {
    pub(crate) pattern: Pattern,
    pub(crate) order: Vec<String>,
    pub(crate) samples: BTreeMap<String, Vec<Sample>>,
    /// What the cipher costs one core per GiB (for the [`Floor`]).
    pub(crate) cipher_s_per_gib: f64,
    /// The machine's cores.
    pub(crate) cores: f64,
}

impl PatternResult {
    /// Median over rounds of `f(a's sample, b's sample)` for the same round.
    pub(crate) fn per_round(
        &self,
        a: &str,
        b: &str,
        f: impl Fn(&Sample, &Sample) -> Option<f64>,
    ) -> Option<f64> {
        let (sa, sb) = (self.samples.get(a)?, self.samples.get(b)?);
        median(sa.iter().zip(sb).filter_map(|(x, y)| f(x, y)).collect())
    }

    /// The best case of a TLS forwarder like `proxy` under this pattern, if socat ran too.
    pub(crate) fn floor(&self, proxy: &str) -> Option<Floor> {
        Floor::of(self, proxy)
    }

    /// Every target of issue 17 for `proxy` under this pattern, each PASS, MISS, OUT OF
    /// REACH or n/a.
    pub(crate) fn checks(&self, proxy: &str) -> Vec<Check> {
        let Some(own) = self.samples.get(proxy).map(|s| median_sample(s)) else {
            return Vec::new();
        };
        let floor = self.floor(proxy);
        let mut checks: Vec<Check> = RATIO_TARGETS
            .iter()
            .map(|t| self.ratio_check(proxy, t, floor))
            .collect();
        for (name, value, i) in [
            ("CPU W s/GiB", own.cpu_write, 0),
            ("CPU R s/GiB", own.cpu_read, 1),
        ] {
            let bound = floor.map(|f| (f.cpu[i], f.cpu[i] <= 0.6));
            let shown = value.map_or("-".into(), |v| format!("{v:.2}"));
            let check = Check {
                name,
                value,
                text: format!("{shown} s/GiB [<= 0.6]"),
                pass: value.map(|v| v <= 0.6),
                bound,
            };
            checks.push(check.with_bound(" s/GiB"));
        }
        let added = |who: &str| self.per_round(who, "direct", |x, d| Some(x.p50_us? - d.p50_us?));
        let (mine, socat) = (added(proxy), added("socat"));
        checks.push(Check {
            name: "p50 added",
            value: mine,
            text: match (mine, socat) {
                (Some(m), Some(s)) => format!("{m:.1} µs vs socat's {s:.1} µs [<= socat + 10]"),
                _ => "not measured with this pattern".into(),
            },
            pass: mine.zip(socat).map(|(m, s)| m <= s + 10.0),
            bound: None,
        });
        let rss_mib = own.rss_peak_kib.map(|k| k / 1024.0);
        checks.push(Check {
            name: "RSS peak",
            value: rss_mib,
            text: format!(
                "{} MiB [<= 16]",
                rss_mib.map_or("-".into(), |m| format!("{m:.1}"))
            ),
            pass: rss_mib.map(|m| m <= 16.0),
            bound: None,
        });
        checks
    }

    /// One ratio target: the median over rounds of `proxy`'s figure over the baseline's,
    /// and the floor's figure over the baseline's median.
    fn ratio_check(&self, proxy: &str, target: &RatioTarget, floor: Option<Floor>) -> Check {
        let get = target.figure;
        let value = self.per_round(proxy, target.base, |p, b| Some(get(p)? / get(b)?));
        let (at_least, at_most) = (target.at_least, target.at_most);
        let meets = |v: f64| at_least.is_none_or(|t| v >= t) && at_most.is_none_or(|t| v <= t);
        let base = self.samples.get(target.base).map(|s| median_sample(s));
        let bound = floor
            .zip(base.as_ref().and_then(get))
            .map(|(f, b)| (target.floor)(&f) / b)
            .map(|b| (b, meets(b)));
        let limit = at_least.map_or_else(
            || format!("<= {:.1}", at_most.unwrap_or(f64::NAN)),
            |t| format!(">= {t:.1}"),
        );
        let shown = value.map_or("-".into(), |v| format!("{v:.2}x"));
        let check = Check {
            name: target.name,
            value,
            text: format!("{shown} {} [{limit}]", target.base),
            pass: value.map(meets),
            bound,
        };
        check.with_bound("x")
    }

    /// efs-proxy and the baselines measured with this pattern.
    pub(crate) fn proxies(&self, baselines: &[(String, PathBuf)]) -> Vec<String> {
        std::iter::once("efs-proxy".to_string())
            .chain(baselines.iter().map(|(n, _)| n.clone()))
            .filter(|n| self.samples.contains_key(n))
            .collect()
    }

    /// Prints this pattern's tables (figures, `--profile` counts, targets, before/after)
    /// and returns them as JSON.
    pub(crate) fn print(&self, args: &Args, baselines: &[(String, PathBuf)]) -> serde_json::Value {
        println!(
            "\n== pattern {}: {} ({} round{}, order rotated)",
            self.pattern.name(),
            self.pattern.describe(args),
            args.rounds,
            if args.rounds == 1 { "" } else { "s" }
        );
        let figures = self.print_figures();
        self.print_split();
        if args.profile {
            self.print_profile();
        }
        let targets = self.print_targets(baselines);
        let before_after = self.print_before_after(baselines);
        let floor = self
            .floor("efs-proxy")
            .map(|f| json!({"cpu_s_per_gib": f.cpu, "max_mib_s": f.throughput}));
        json!({
            "pattern": self.pattern.name(),
            "description": self.pattern.describe(args),
            "floor_write_read": floor,
            "figures": figures,
            "targets": targets,
            "before_after": before_after,
        })
    }

    /// The medians of every forwarder, one row each; the medians and rounds as JSON.
    fn print_figures(&self) -> serde_json::Map<String, serde_json::Value> {
        println!(
            "{:<10} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>8}",
            "", "WRITE", "READ", "CPU W", "CPU R", "p50", "p99", "RSS peak", "first", "idle conn"
        );
        println!(
            "{:<10} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>8}",
            "", "MiB/s", "MiB/s", "s/GiB", "s/GiB", "µs", "µs", "MiB", "ms", "KiB"
        );
        let mut figures = serde_json::Map::new();
        for (name, rounds) in self.in_order() {
            let m = median_sample(rounds);
            println!(
                "{:<10} {:>8.0} {:>8.0} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>8}",
                name,
                m.write_mib_s,
                m.read_mib_s,
                opt(m.cpu_write, 2),
                opt(m.cpu_read, 2),
                opt(m.p50_us, 1),
                opt(m.p99_us, 1),
                opt(m.rss_peak_kib.map(|k| k / 1024.0), 1),
                opt(m.first_call_ms, 2),
                opt(m.idle_conn_kib, 1),
            );
            figures.insert(
                name.clone(),
                json!({
                    "median": m.to_json(),
                    "rounds": rounds.iter().map(Sample::to_json).collect::<Vec<_>>(),
                }),
            );
        }
        figures
    }

    /// Where the CPU went in each direction: the forwarder (and its kernel part), the mount
    /// target, the whole machine, and how many cores were busy.
    fn print_split(&self) {
        println!(
            "CPU per GiB moved, s/GiB:   {:>9} {:>9} {:>9} {:>9} {:>11}",
            "forwarder", "(kernel)", "target", "machine", "busy cores"
        );
        for (name, rounds) in self.in_order() {
            let m = median_sample(rounds);
            for (dir, cpu, split) in [
                ("W", m.cpu_write, m.split_write),
                ("R", m.cpu_read, m.split_read),
            ] {
                println!(
                    "  {name:<10} {dir}              {:>9} {:>9} {:>9} {:>9} {:>11}",
                    opt(cpu, 2),
                    opt(split.forwarder_system, 2),
                    opt(split.target, 2),
                    opt(split.machine, 2),
                    opt(split.cores, 2),
                );
            }
        }
    }

    /// The forwarders in the order they were first measured, with their rounds.
    fn in_order(&self) -> impl Iterator<Item = (&String, &Vec<Sample>)> {
        self.order
            .iter()
            .filter_map(|name| Some((name, self.samples.get(name)?)))
    }

    /// `--profile`: `perf stat` counts per GiB moved, each direction of each forwarder.
    fn print_profile(&self) {
        println!(
            "per GiB moved (perf stat):     {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "CPU ms", "syscalls", "reads", "writes", "epoll", "futex", "ctx sw"
        );
        for (name, rounds) in self.in_order() {
            let m = median_sample(rounds);
            for (dir, p) in [("W", &m.profile_write), ("R", &m.profile_read)] {
                if p.is_empty() {
                    continue;
                }
                let get = |keys: &[&str]| keys.iter().filter_map(|k| p.get(*k)).sum::<f64>();
                println!(
                    "  {:<10} {dir}              {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0}",
                    name,
                    get(&["task-clock"]),
                    get(&["raw_syscalls:sys_enter"]),
                    get(&["read", "recvfrom", "readv", "recvmsg"]),
                    get(&["write", "writev", "sendto", "sendmsg"]),
                    get(&["epoll_wait", "epoll_pwait"]),
                    get(&["futex"]),
                    get(&["context-switches"]),
                );
            }
        }
    }

    /// The targets of issue 17, one list per proxy build measured.
    fn print_targets(
        &self,
        baselines: &[(String, PathBuf)],
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut targets = serde_json::Map::new();
        for proxy in self.proxies(baselines) {
            let checks = self.checks(&proxy);
            if checks.is_empty() {
                continue;
            }
            if let Some(f) = self.floor(&proxy) {
                println!(
                    "floor of a TLS forwarder here (socket work + cipher, {:.0} cores): CPU W {:.2} R {:.2} s/GiB, at most W {:.0} R {:.0} MiB/s",
                    self.cores, f.cpu[0], f.cpu[1], f.throughput[0], f.throughput[1]
                );
            }
            println!("{proxy} against the targets of issue 17 (medians of per-round ratios):");
            for c in &checks {
                println!("  {:<14} {:<64} {}", c.name, c.text, c.verdict());
            }
            targets.insert(
                proxy,
                checks
                    .iter()
                    .map(|c| json!({"target": c.name, "value": c.value, "floor": c.bound.map(|b| b.0), "text": c.text, "verdict": c.verdict()}))
                    .collect(),
            );
        }
        targets
    }

    /// efs-proxy over each `--baseline` build: the before/after ratios.
    fn print_before_after(&self, baselines: &[(String, PathBuf)]) -> Vec<serde_json::Value> {
        let mut before_after = Vec::new();
        for (base, _) in baselines {
            let r = |get: fn(&Sample) -> Option<f64>| {
                self.per_round("efs-proxy", base, |a, b| Some(get(a)? / get(b)?))
            };
            let (w, rd, cw, cr, p) = (
                r(|s| Some(s.write_mib_s)),
                r(|s| Some(s.read_mib_s)),
                r(|s| s.cpu_write),
                r(|s| s.cpu_read),
                r(|s| s.p50_us),
            );
            println!(
                "efs-proxy / {base}: WRITE {}  READ {}  CPU/GiB W {}  R {}  p50 {}",
                opt(w, 3),
                opt(rd, 3),
                opt(cw, 3),
                opt(cr, 3),
                opt(p, 3)
            );
            before_after.push(json!({
                "baseline": base, "write": w, "read": rd, "cpu_per_gib_write": cw,
                "cpu_per_gib_read": cr, "latency_p50": p,
            }));
        }
        before_after
    }
}

/// A figure for a table cell: `-` when not measured.
fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

/// A target stated as a ratio to a baseline's figure.
struct RatioTarget {
    name: &'static str,
    base: &'static str,
    figure: fn(&Sample) -> Option<f64>,
    at_least: Option<f64>,
    at_most: Option<f64>,
    /// The [`Floor`]'s figure of the same kind (its ratio to the baseline is the bound).
    floor: fn(&Floor) -> f64,
}

/// Throughput ≥ 1.5× stunnel and ≥ 0.8× socat (128 KiB); CPU per GiB ≤ 0.5× stunnel's.
const RATIO_TARGETS: &[RatioTarget] = &[
    RatioTarget {
        name: "WRITE/stunnel",
        base: "stunnel",
        figure: |s| Some(s.write_mib_s),
        at_least: Some(1.5),
        at_most: None,
        floor: |f| f.throughput[0],
    },
    RatioTarget {
        name: "READ/stunnel",
        base: "stunnel",
        figure: |s| Some(s.read_mib_s),
        at_least: Some(1.5),
        at_most: None,
        floor: |f| f.throughput[1],
    },
    RatioTarget {
        name: "WRITE/socat",
        base: "socat",
        figure: |s| Some(s.write_mib_s),
        at_least: Some(0.8),
        at_most: None,
        floor: |f| f.throughput[0],
    },
    RatioTarget {
        name: "READ/socat",
        base: "socat",
        figure: |s| Some(s.read_mib_s),
        at_least: Some(0.8),
        at_most: None,
        floor: |f| f.throughput[1],
    },
    RatioTarget {
        name: "CPU W/stunnel",
        base: "stunnel",
        figure: |s| s.cpu_write,
        at_least: None,
        at_most: Some(0.5),
        floor: |f| f.cpu[0],
    },
    RatioTarget {
        name: "CPU R/stunnel",
        base: "stunnel",
        figure: |s| s.cpu_read,
        at_least: None,
        at_most: Some(0.5),
        floor: |f| f.cpu[1],
    },
];
