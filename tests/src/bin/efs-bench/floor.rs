//! What any TLS forwarder could reach on this machine, from the figures of the same run: the
//! bound a missed target of issue 17 is held against before it is called out of reach.
//!
//! The model, in two lines:
//!
//! * **CPU**: a TLS forwarder does at least the socket work of a forwarder (the copies in and
//!   out of the kernel and the system calls) plus one AES-GCM pass over every byte (the
//!   cipher the forwarders negotiate, measured on one core in this process with ring, the
//!   library efs-proxy uses). The socket work is the least this run shows for the pattern:
//!   socat's whole CPU or the TLS forwarder's own kernel time, whichever is smaller. So the
//!   floor leaves out every user-space copy (a forwarder could receive straight into its TLS
//!   record buffers and encrypt there) and all TLS framing.
//! * **Throughput**: the client, the forwarder and the mount target share the machine's
//!   cores, so no forwarder moves more than `cores / (machine CPU per GiB)`. With a forwarder
//!   at the floor, the machine's CPU per GiB is the socat run's, less socat's own, plus the
//!   floor, plus what TLS costs the mount target (its CPU behind the TLS forwarder less its
//!   CPU behind socat). The client's share is the socat run's.
//!
//! The floor is generous to the targets: a real forwarder also frames TLS records, and the
//! mount target's decryption could not be cheaper than measured.

use crate::measure::{CpuSplit, Sample};
use crate::report::{PatternResult, median_sample};

/// One forwarder's best case on this machine under one client pattern.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Floor {
    /// Least CPU per GiB of a TLS forwarder, WRITE and READ.
    pub(crate) cpu: [f64; 2],
    /// Most MiB/s any TLS forwarder could move, WRITE and READ.
    pub(crate) throughput: [f64; 2],
}

impl Floor {
    /// The floor of a TLS forwarder like `proxy` under `result`'s pattern: needs socat's
    /// and `proxy`'s figures from the same run.
    pub(crate) fn of(result: &PatternResult, proxy: &str) -> Option<Floor> {
        let (cipher_s_per_gib, cores) = (result.cipher_s_per_gib, result.cores);
        let socat = median_sample(result.samples.get("socat")?);
        let tls = median_sample(result.samples.get(proxy)?);
        let direction = |pick: fn(&Sample) -> Direction| {
            let (plain, tls) = (pick(&socat), pick(&tls));
            let cpu = plain.forwarder?.min(tls.system?) + cipher_s_per_gib;
            let machine = plain.machine? - plain.forwarder? - plain.target? + cpu + tls.target?;
            Some((cpu, cores / machine * 1024.0))
        };
        let (write_cpu, write_mib_s) = direction(Direction::write)?;
        let (read_cpu, read_mib_s) = direction(Direction::read)?;
        Some(Floor {
            cpu: [write_cpu, read_cpu],
            throughput: [write_mib_s, read_mib_s],
        })
    }
}

/// The CPU figures of one direction of a [`Sample`], s/GiB.
struct Direction {
    forwarder: Option<f64>,
    system: Option<f64>,
    target: Option<f64>,
    machine: Option<f64>,
}

impl Direction {
    fn write(s: &Sample) -> Direction {
        Direction::of(s.cpu_write, &s.split_write)
    }

    fn read(s: &Sample) -> Direction {
        Direction::of(s.cpu_read, &s.split_read)
    }

    fn of(forwarder: Option<f64>, split: &CpuSplit) -> Direction {
        Direction {
            forwarder,
            system: split.forwarder_system,
            target: split.target,
            machine: split.machine,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::pattern::Pattern;

    /// A sample whose WRITE and READ figures are the same.
    fn sample(mib_s: f64, cpu: f64, system: f64, target: f64, machine: f64) -> Sample {
        let split = CpuSplit {
            forwarder_system: Some(system),
            target: Some(target),
            machine: Some(machine),
            cores: Some(machine * mib_s / 1024.0),
        };
        Sample {
            write_mib_s: mib_s,
            read_mib_s: mib_s,
            cpu_write: Some(cpu),
            cpu_read: Some(cpu),
            split_write: split,
            split_read: split,
            ..Sample::default()
        }
    }

    fn result(samples: &[(&str, Sample)]) -> PatternResult {
        PatternResult {
            pattern: Pattern::Rust,
            order: samples.iter().map(|(n, _)| n.to_string()).collect(),
            samples: samples
                .iter()
                .map(|(n, s)| (n.to_string(), vec![s.clone()]))
                .collect::<BTreeMap<_, _>>(),
            cipher_s_per_gib: 0.15,
            cores: 2.0,
        }
    }

    #[test]
    fn the_floor_is_the_least_socket_work_plus_the_cipher_and_the_cores_over_the_machine() {
        let r = result(&[
            // socat: 0.5 s/GiB of its own, the plaintext target 0.25, the client 0.35.
            ("socat", sample(1500.0, 0.5, 0.49, 0.25, 1.1)),
            ("stunnel", sample(900.0, 1.1, 0.7, 0.55, 2.0)),
            // efs-proxy: 0.4 s/GiB in the kernel, the TLS target 0.55.
            ("efs-proxy", sample(1100.0, 0.7, 0.4, 0.55, 1.6)),
        ]);
        let floor = r.floor("efs-proxy").unwrap();
        // min(0.5, 0.4) + 0.15
        assert!((floor.cpu[0] - 0.55).abs() < 1e-9, "{floor:?}");
        // The client's 0.35 + the floor's 0.55 + the TLS target's 0.55 = 1.45 s/GiB.
        let ceiling = 2.0 / 1.45 * 1024.0;
        assert!((floor.throughput[1] - ceiling).abs() < 1e-6, "{floor:?}");
    }

    #[test]
    fn a_miss_is_out_of_reach_only_when_the_floor_cannot_meet_the_target() {
        let r = result(&[
            ("socat", sample(1500.0, 0.5, 0.49, 0.25, 1.1)),
            ("stunnel", sample(900.0, 1.2, 0.7, 0.55, 2.0)),
            ("efs-proxy", sample(1100.0, 0.7, 0.4, 0.55, 1.6)),
        ]);
        let checks = r.checks("efs-proxy");
        let verdict = |name: &str| {
            let check = checks.iter().find(|c| c.name == name).unwrap();
            (check.verdict(), check.text.clone())
        };
        // Floor 0.55 s/GiB: 0.7 misses 0.6, but a TLS forwarder could meet it.
        assert_eq!(verdict("CPU W s/GiB").0, "MISS");
        // 0.55 / 1.2 = 0.46: within reach of <= 0.5x stunnel, which 0.58x misses.
        assert_eq!(verdict("CPU W/stunnel").0, "MISS");
        // Ceiling 1412 MiB/s is 0.94x socat: 0.73x misses a reachable 0.8x.
        assert_eq!(verdict("WRITE/socat").0, "MISS");
        // 1412 / 900 = 1.57x stunnel: 1.22x misses a reachable 1.5x.
        assert_eq!(verdict("WRITE/stunnel").0, "MISS");

        let slow_machine = result(&[
            ("socat", sample(1500.0, 0.5, 0.49, 0.25, 1.1)),
            ("stunnel", sample(900.0, 1.1, 0.7, 0.55, 2.0)),
            // A mount target whose TLS costs 1.5 s/GiB: at most 2 / 2.4 GiB/s.
            ("efs-proxy", sample(800.0, 0.7, 0.4, 1.5, 2.6)),
        ]);
        let checks = slow_machine.checks("efs-proxy");
        let stunnel = checks.iter().find(|c| c.name == "WRITE/stunnel").unwrap();
        assert_eq!(stunnel.verdict(), "OUT OF REACH", "{}", stunnel.text);
        assert!(stunnel.text.contains("(floor 0.95x)"), "{}", stunnel.text);
    }
}
