//! Client patterns: how the load client talks to a forwarder, one table each.

use anyhow::bail;
use efs_proxy_tests::bench::Chunking;

use crate::args::Args;

/// A client pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pattern {
    Rust,
    Bulk,
    Trickle,
    Conc(usize),
    Libnfs,
}

impl Pattern {
    pub(crate) fn parse(s: &str) -> anyhow::Result<Pattern> {
        Ok(match s {
            "rust" => Pattern::Rust,
            "bulk" => Pattern::Bulk,
            "trickle" => Pattern::Trickle,
            "libnfs" => Pattern::Libnfs,
            other => match other.strip_prefix("conc").and_then(|n| n.parse().ok()) {
                Some(n) if n >= 1 => Pattern::Conc(n),
                _ => bail!("unknown pattern {other:?} (rust, bulk, trickle, concN, libnfs)"),
            },
        })
    }

    pub(crate) fn name(&self) -> String {
        match self {
            Pattern::Rust => "rust".into(),
            Pattern::Bulk => "bulk".into(),
            Pattern::Trickle => "trickle".into(),
            Pattern::Conc(n) => format!("conc{n}"),
            Pattern::Libnfs => "libnfs".into(),
        }
    }

    pub(crate) fn describe(&self, args: &Args) -> String {
        match self {
            Pattern::Rust => "tokio client: write_all per call, FramedRead replies, 16 x 1 MiB in flight".into(),
            Pattern::Bulk => "blocking client: one write per 1 MiB call, large reads into a growing buffer, 16 in flight".into(),
            Pattern::Trickle => format!(
                "blocking client: calls written in {} KiB pieces, replies read {} KiB at a time, 16 x 1 MiB in flight",
                args.trickle_send / 1024,
                args.trickle_recv / 1024
            ),
            Pattern::Conc(n) => format!(
                "{n} connections of the tokio client at once, {} x 1 MiB in flight each; totals",
                args.conc_in_flight
            ),
            Pattern::Libnfs => format!(
                "libnfs-utils 4.0 (NFSv3): nfs-cp of a {} MiB file to nfs-ganesha (WRITE), nfs-cat back (READ), through the fake mount target's relay",
                args.nfs_mib
            ),
        }
    }

    pub(crate) fn chunking(&self, args: &Args) -> Option<Chunking> {
        match self {
            Pattern::Bulk => Some(Chunking::BULK),
            Pattern::Trickle => Some(Chunking {
                send: Some(args.trickle_send),
                recv: Some(args.trickle_recv),
            }),
            _ => None,
        }
    }
}
