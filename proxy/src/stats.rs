//! Live counters of a running proxy: cheap atomics, readable at any time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which way a record travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    ToServer,
    ToClient,
}

/// Counters shared by every connection of one proxy.
#[derive(Debug, Default)]
pub struct Stats {
    /// Client connections accepted, including port probes that never send a record.
    pub connections_accepted: AtomicU64,
    /// Client connections currently forwarding to the mount target.
    pub connections_active: AtomicU64,
    /// Client connections dropped because the mount target could not be reached or bound
    /// (DNS, TCP, TLS or bind failed); the NFS client retries.
    pub connect_failures: AtomicU64,
    /// `bind_client_to_partition` calls answered with a decoded reply, whatever it said.
    pub binds: AtomicU64,
    /// Binds answered with an RPC refusal (a server without AWSFILE): forwarded without bind.
    pub bind_refusals: AtomicU64,
    /// Binds answered READY.
    pub ready_binds: AtomicU64,
    /// Connect+bind attempts of scale-up searches.
    pub scale_up_attempts: AtomicU64,
    /// Client connections closed because the server stopped answering.
    pub server_timeouts: AtomicU64,
    /// RPC records forwarded from clients to the server.
    pub records_to_server: AtomicU64,
    /// RPC records forwarded from the server to clients.
    pub records_to_client: AtomicU64,
    /// Bytes of those records to the server, record marks included.
    pub bytes_to_server: AtomicU64,
    /// Bytes of those records to clients, record marks included.
    pub bytes_to_client: AtomicU64,
    /// Expiry of the client certificate in use, in seconds since the Unix epoch (0: none).
    certificate_expiry: AtomicU64,
    /// The first 8 bytes of the partition of the latest READY bind (valid once
    /// `ready_binds` > 0).
    partition_prefix: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`Stats::connections_accepted`].
    pub connections_accepted: u64,
    /// See [`Stats::connections_active`].
    pub connections_active: u64,
    /// See [`Stats::connect_failures`].
    pub connect_failures: u64,
    /// See [`Stats::binds`].
    pub binds: u64,
    /// See [`Stats::bind_refusals`].
    pub bind_refusals: u64,
    /// See [`Stats::ready_binds`].
    pub ready_binds: u64,
    /// See [`Stats::scale_up_attempts`].
    pub scale_up_attempts: u64,
    /// See [`Stats::server_timeouts`].
    pub server_timeouts: u64,
    /// See [`Stats::records_to_server`].
    pub records_to_server: u64,
    /// See [`Stats::records_to_client`].
    pub records_to_client: u64,
    /// See [`Stats::bytes_to_server`].
    pub bytes_to_server: u64,
    /// See [`Stats::bytes_to_client`].
    pub bytes_to_client: u64,
    /// When the client certificate new connections present expires.
    pub certificate_expiry: Option<SystemTime>,
    /// The first 8 bytes of the partition of the latest READY bind (as the logs print it).
    pub partition_prefix: Option<[u8; 8]>,
}

impl Stats {
    pub(crate) fn record(&self, direction: Direction, wire_len: usize) {
        let (records, bytes) = match direction {
            Direction::ToServer => (&self.records_to_server, &self.bytes_to_server),
            Direction::ToClient => (&self.records_to_client, &self.bytes_to_client),
        };
        records.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(wire_len as u64, Ordering::Relaxed);
    }

    /// Records when the client certificate in use expires.
    pub fn set_certificate_expiry(&self, at: Option<SystemTime>) {
        let secs = at
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs().max(1));
        self.certificate_expiry.store(secs, Ordering::Relaxed);
    }

    /// Counts a READY bind and remembers its partition (the first 8 bytes).
    pub(crate) fn ready(&self, partition: &[u8]) {
        let mut prefix = [0u8; 8];
        let n = partition.len().min(8);
        prefix[..n].copy_from_slice(&partition[..n]);
        self.partition_prefix
            .store(u64::from_be_bytes(prefix), Ordering::Relaxed);
        self.ready_binds.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter. Each is read on its own, so a snapshot taken while traffic flows
    /// may pair, say, a record count with a byte count from a moment later.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            connections_accepted: get(&self.connections_accepted),
            connections_active: get(&self.connections_active),
            connect_failures: get(&self.connect_failures),
            binds: get(&self.binds),
            bind_refusals: get(&self.bind_refusals),
            ready_binds: get(&self.ready_binds),
            scale_up_attempts: get(&self.scale_up_attempts),
            server_timeouts: get(&self.server_timeouts),
            records_to_server: get(&self.records_to_server),
            records_to_client: get(&self.records_to_client),
            bytes_to_server: get(&self.bytes_to_server),
            bytes_to_client: get(&self.bytes_to_client),
            certificate_expiry: match get(&self.certificate_expiry) {
                0 => None,
                secs => Some(UNIX_EPOCH + Duration::from_secs(secs)),
            },
            partition_prefix: (self.ready_binds.load(Ordering::Acquire) > 0)
                .then(|| get(&self.partition_prefix).to_be_bytes()),
        }
    }
}
