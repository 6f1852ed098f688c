//! One side of the forwarder as the forwarding targets play it: an in-memory peer on a tokio
//! duplex pipe that records what it wrote and read, and the timing constants of the driver
//! (virtual time: the targets run on a paused clock).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::timeout;

use crate::untracked;

/// How long a write may make no progress before the driver gives up on it (virtual time).
pub const STALL: Duration = Duration::from_secs(1);
/// How long a read waits for data.
pub const READ_WAIT: Duration = Duration::from_millis(10);
/// How long both sides must stay quiet for the forwarder to count as idle.
pub const QUIET: Duration = Duration::from_millis(100);
/// A read that returns as soon as the runtime is idle (virtual time moves only then).
pub const IDLE: Duration = Duration::from_millis(1);
/// Work for generated records per input, so that a run stays fast: a record costs one unit
/// plus one per pipe-full of its bytes (each pipe-full is a round trip through the forwarder).
pub const RECORD_BUDGET: usize = 8_000;
/// Bytes of generated records per input: over twice what the forwarder may ever hold.
pub const BYTE_BUDGET: usize = 8 << 20;
pub const SCRATCH: usize = 16 << 10;

/// One side of the forwarder, as the driver plays it.
pub struct Peer {
    pub stream: Option<DuplexStream>,
    pub write_shut: bool,
    pub dropped: bool,
    /// Everything this peer managed to write.
    pub sent: Vec<u8>,
    /// Everything it read.
    pub received: Vec<u8>,
    pub eof: bool,
    pub scratch: Vec<u8>,
}

impl Peer {
    pub fn new(stream: DuplexStream) -> Peer {
        untracked(|| Peer {
            stream: Some(stream),
            write_shut: false,
            dropped: false,
            sent: Vec::new(),
            received: Vec::new(),
            eof: false,
            scratch: vec![0; SCRATCH],
        })
    }

    pub fn closed(&self) -> bool {
        self.write_shut || self.dropped
    }

    /// Writes as much of `bytes` as the pipe takes before stalling; false if not all of it.
    pub async fn write(&mut self, bytes: &[u8]) -> bool {
        if self.write_shut {
            return false;
        }
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        let mut done = 0;
        while done < bytes.len() {
            match timeout(STALL, stream.write(&bytes[done..])).await {
                Ok(Ok(n)) if n > 0 => {
                    untracked(|| self.sent.extend_from_slice(&bytes[done..done + n]));
                    done += n;
                }
                // Stalled (the forwarder does not read), or the forwarder is gone.
                _ => return false,
            }
        }
        true
    }

    /// Reads what arrives within `wait`, up to `max` bytes (0: up to the scratch size).
    pub async fn read(&mut self, max: usize, wait: Duration) {
        if self.eof {
            return;
        }
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let want = if max == 0 { SCRATCH } else { max.min(SCRATCH) };
        match timeout(wait, stream.read(&mut self.scratch[..want])).await {
            Ok(Ok(0)) | Ok(Err(_)) => self.eof = true,
            Ok(Ok(n)) => untracked(|| self.received.extend_from_slice(&self.scratch[..n])),
            Err(_) => {}
        }
    }

    /// Reads until the forwarder closes this side.
    pub async fn drain(&mut self) {
        while self.stream.is_some() && !self.eof {
            self.read(0, Duration::from_secs(3600)).await;
        }
    }

    pub async fn shutdown(&mut self) {
        if let Some(stream) = self.stream.as_mut() {
            let _ = timeout(STALL, stream.shutdown()).await;
        }
        self.write_shut = true;
    }

    pub fn drop_stream(&mut self) {
        self.stream = None;
        self.dropped = true;
    }
}

/// Runs `future` to completion on this thread's runtime for the forwarding targets: one per
/// process (building one costs more than most runs), current-thread, with a paused clock, so
/// time only moves when every task waits and timeouts cost no real time.
pub fn block_on_paused<F: std::future::Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
    }
    RUNTIME.with(|runtime| runtime.block_on(future))
}

/// What is left of an input's allowance for generated records ([`RECORD_BUDGET`] units and
/// [`BYTE_BUDGET`] bytes).
#[derive(Debug)]
pub struct Budget {
    units: usize,
    bytes: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            units: RECORD_BUDGET,
            bytes: BYTE_BUDGET,
        }
    }
}

/// A `WriteRecords` operation: up to `count` records made by `make(index, len, fragments,
/// out)`, each of `1 + len % (max + 8)` bytes in `1 + fragments % 8` fragments (so both
/// too-large and fragmented records occur), written by `peer` while the budget lasts.
pub struct RecordBatch {
    pub count: u16,
    pub len: u16,
    pub fragments: u8,
}

impl RecordBatch {
    /// Writes the batch; stops at the first record the pipe does not take whole.
    pub async fn write(
        &self,
        peer: &mut Peer,
        max: usize,
        duplex_capacity: usize,
        budget: &mut Budget,
        record: &mut Vec<u8>,
        make: impl Fn(u32, usize, usize, &mut Vec<u8>),
    ) {
        let len = 1 + usize::from(self.len) % (max + 8);
        let fragments = 1 + usize::from(self.fragments) % 8;
        // One unit per record plus one per pipe-full (a round trip through the forwarder).
        let cost = 1 + (len + 4 * fragments).div_ceil(duplex_capacity);
        for index in 0..u32::from(self.count) {
            if budget.units < cost || budget.bytes < len {
                break;
            }
            budget.units -= cost;
            budget.bytes -= len;
            untracked(|| make(index, len, fragments, record));
            if !peer.write(record).await {
                break;
            }
        }
    }
}
