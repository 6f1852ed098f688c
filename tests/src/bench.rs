//! Measurement primitives of the benchmark (`efs-bench`): a lean record-marked RPC load
//! client (pre-encoded calls, no payload checks on the hot path) and `/proc` readings of the
//! process under test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use efs_rpc::{CallHeader, RecordCodec, RpcMessage, parse_accepted_reply};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::codec::FramedRead;

use crate::load::NFS_PROGRAM;
use crate::responder::BENCH_READ;

/// A benchmark WRITE: the call carries the data, the reply is a header.
pub const BENCH_WRITE: u32 = 7;

/// Which way the bulk data flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Large calls, small replies (NFS WRITE).
    Write,
    /// Small calls, large replies (NFS READ).
    Read,
}

/// One call record in wire form; the xid is patched in place for each call.
fn call_record(procedure: u32, args: &[u8]) -> anyhow::Result<BytesMut> {
    let message =
        RpcMessage::call(0, CallHeader::new(NFS_PROGRAM, 4, procedure)).encode_with_body(args)?;
    let mut wire = BytesMut::with_capacity(4 + message.len());
    wire.put_u32(message.len() as u32 | 0x8000_0000);
    wire.put_slice(&message);
    Ok(wire)
}

fn with_xid(template: &BytesMut, xid: u32) -> Bytes {
    let mut wire = template.clone();
    wire[4..8].copy_from_slice(&xid.to_be_bytes());
    wire.freeze()
}

async fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

type Reader = FramedRead<tokio::net::tcp::OwnedReadHalf, RecordCodec>;

async fn next_reply(reader: &mut Reader) -> anyhow::Result<(u32, usize)> {
    let record = reader
        .next()
        .await
        .context("connection closed")?
        .context("bad record")?;
    let (xid, results) = parse_accepted_reply(record.message())?;
    Ok((xid, results.len()))
}

/// Time from connect to the first reply (connect, TLS and bind included behind a proxy).
pub async fn first_call(addr: SocketAddr) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let stream = connect(addr).await?;
    let (read, mut write) = stream.into_split();
    let mut reader = FramedRead::new(read, RecordCodec::default());
    write.write_all(&with_xid(&call_record(0, &[])?, 1)).await?;
    next_reply(&mut reader).await?;
    Ok(start.elapsed())
}

/// Round trips of `calls` sequential small calls (after `warmup` more), in nanoseconds.
pub async fn latency(addr: SocketAddr, warmup: usize, calls: usize) -> anyhow::Result<Vec<u64>> {
    let stream = connect(addr).await?;
    let (read, mut write) = stream.into_split();
    let mut reader = FramedRead::new(read, RecordCodec::default());
    let template = call_record(BENCH_WRITE, &[0u8; 128])?;
    let mut times = Vec::with_capacity(calls);
    for i in 0..(warmup + calls) as u32 {
        let start = Instant::now();
        write.write_all(&with_xid(&template, i)).await?;
        let (xid, _) = next_reply(&mut reader).await?;
        if xid != i {
            bail!("reply {xid} to call {i}");
        }
        if i as usize >= warmup {
            times.push(start.elapsed().as_nanos() as u64);
        }
    }
    Ok(times)
}

/// Bulk transfer on one connection with `in_flight` calls outstanding, for `duration`.
/// Returns the payload bytes moved in the flow's direction and the time taken.
pub async fn throughput(
    addr: SocketAddr,
    flow: Flow,
    size: usize,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<(u64, Duration)> {
    let stream = connect(addr).await?;
    let (read, mut write) = stream.into_split();
    let mut reader = FramedRead::new(read, RecordCodec::new(size + 64 * 1024));
    let template = match flow {
        Flow::Write => call_record(BENCH_WRITE, &vec![0u8; size])?,
        Flow::Read => call_record(BENCH_READ, &(size as u32).to_be_bytes())?,
    };
    let slots = Arc::new(Semaphore::new(in_flight));
    let start = Instant::now();
    let deadline = start + duration;
    // (calls sent, writer done): the reader stops once the writer is done and every call
    // sent has its reply, and never waits for a reply when none is outstanding.
    let (progress, mut seen) = tokio::sync::watch::channel((0u64, false));
    let writer = {
        let slots = slots.clone();
        tokio::spawn(async move {
            let mut xid = 0u32;
            while Instant::now() < deadline {
                let Ok(permit) = slots.acquire().await else {
                    break;
                };
                permit.forget();
                xid = xid.wrapping_add(1);
                if write.write_all(&with_xid(&template, xid)).await.is_err() {
                    break;
                }
                progress.send_modify(|(sent, _)| *sent += 1);
            }
            progress.send_modify(|(_, done)| *done = true);
            write
        })
    };
    let mut replies = 0u64;
    let mut moved = 0u64;
    loop {
        let (sent, done) = *seen.borrow_and_update();
        if replies == sent {
            if done {
                break;
            }
            if seen.changed().await.is_err() {
                break;
            }
            continue;
        }
        let (_, len) = tokio::time::timeout(Duration::from_secs(30), next_reply(&mut reader))
            .await
            .with_context(|| {
                format!("no reply for 30 s ({flow:?}: {sent} calls sent, {replies} replies)")
            })??;
        replies += 1;
        moved += match flow {
            Flow::Write => size as u64,
            Flow::Read => len as u64,
        };
        slots.add_permits(1);
    }
    let _write = writer.await?;
    Ok((moved, start.elapsed()))
}

/// Opens `n` connections that each complete one call and then stay idle.
pub async fn idle_connections(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<TcpStream>> {
    let mut open = Vec::with_capacity(n);
    for i in 0..n as u32 {
        let stream = connect(addr).await?;
        let (read, mut write) = stream.into_split();
        let mut reader = FramedRead::new(read, RecordCodec::default());
        write.write_all(&with_xid(&call_record(0, &[])?, i)).await?;
        next_reply(&mut reader).await?;
        open.push(reader.into_inner().reunite(write)?);
    }
    Ok(open)
}

/// CPU time of a process so far (children that exited included), split where it was spent.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    /// In the program itself (user mode): for a TLS forwarder, the cipher and its own copies.
    pub user: Duration,
    /// In the kernel on its behalf: system calls, socket copies, loopback delivery.
    pub system: Duration,
}

impl CpuTimes {
    /// User and system time together.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }
}

/// CPU time of a process so far (children that exited included), user and system apart.
pub fn cpu_times(pid: u32) -> anyhow::Result<CpuTimes> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').context("odd /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14-17 of the full line: 11-14 here.
    let tick = |i: usize| -> anyhow::Result<u64> {
        let field = fields.get(i).context("short /proc stat")?;
        Ok(field.parse::<u64>()?)
    };
    Ok(CpuTimes {
        user: ticks(tick(11)? + tick(13)?),
        system: ticks(tick(12)? + tick(14)?),
    })
}

/// Busy CPU time of the whole machine since boot, all CPUs together: everything but idle
/// and I/O wait (the first line of `/proc/stat`; guest time is already in user time).
pub fn machine_busy() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse::<u64>())
        .collect::<Result<_, _>>()
        .context("odd /proc/stat")?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| values.get(i))
        .sum();
    Ok(ticks(busy))
}

fn ticks(count: u64) -> Duration {
    Duration::from_millis(count * 1000 / clock_ticks())
}

fn clock_ticks() -> u64 {
    // USER_HZ is 100 on every Linux architecture this runs on.
    100
}

/// Resident memory now and at its peak, in KiB.
pub fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// Percentile of sorted nanoseconds, in microseconds.
pub fn percentile_us(sorted_ns: &[u64], p: f64) -> f64 {
    if sorted_ns.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted_ns.len() - 1) as f64 * p).round() as usize;
    sorted_ns[i] as f64 / 1000.0
}

/// How a blocking load client ([`blocking_throughput`]) moves its bytes: the client patterns
/// of the benchmark other than the tokio client above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunking {
    /// Each call is written in pieces of this many bytes, one `write` each (`None`: the whole
    /// record in one `write`, as `sendall` does).
    pub send: Option<usize>,
    /// Replies are read this many bytes at a time (`None`: large reads into a buffer that
    /// grows to hold the record being received, as `recv_into` into a growing buffer does).
    pub recv: Option<usize>,
}

impl Chunking {
    /// One large send per record, large reads into a growing buffer.
    pub const BULK: Chunking = Chunking {
        send: None,
        recv: None,
    };
}

/// Slots of calls in flight, shared by a blocking client's writer and reader threads.
struct Slots {
    free: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Slots {
    fn take(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut free = self.free.lock().unwrap();
        while *free == 0 {
            let (guard, wait) = self.freed.wait_timeout(free, timeout).unwrap();
            free = guard;
            if wait.timed_out() && *free == 0 {
                bail!("no reply for {timeout:?}");
            }
        }
        *free -= 1;
        Ok(())
    }

    fn give(&self, n: usize) {
        *self.free.lock().unwrap() += n;
        self.freed.notify_one();
    }
}

/// Reads replies from a blocking socket into a buffer that grows to hold the record being
/// received, in reads of `recv` bytes (or as large as the rest of the record, at least
/// 256 KiB, when `None`).
struct BlockingReader {
    stream: std::net::TcpStream,
    buffer: Vec<u8>,
    /// Bytes of `buffer` filled.
    filled: usize,
    recv: Option<usize>,
}

impl BlockingReader {
    fn new(stream: std::net::TcpStream, recv: Option<usize>) -> Self {
        BlockingReader {
            stream,
            buffer: Vec::new(),
            filled: 0,
            recv,
        }
    }

    /// The next complete record's message length and its results' length (single-fragment
    /// records, as every server of the benchmark sends).
    fn next_reply(&mut self) -> anyhow::Result<(u32, usize)> {
        use std::io::Read;
        loop {
            if self.filled >= 4 {
                let mark = u32::from_be_bytes(self.buffer[..4].try_into().unwrap());
                if mark & 0x8000_0000 == 0 {
                    bail!("multi-fragment reply: not expected from the benchmark's servers");
                }
                let end = 4 + (mark & 0x7fff_ffff) as usize;
                if self.filled >= end {
                    let (xid, results) = parse_accepted_reply(&self.buffer[4..end])?;
                    let len = results.len();
                    // What follows the record is a few bytes or a part of the next one:
                    // moved to the front once per record.
                    self.buffer.copy_within(end..self.filled, 0);
                    self.filled -= end;
                    return Ok((xid, len));
                }
                let want = match self.recv {
                    Some(n) => n,
                    None => (end - self.filled).max(256 * 1024),
                };
                self.reserve(want);
            } else {
                self.reserve(self.recv.unwrap_or(256 * 1024));
            }
            let want = self.recv.unwrap_or(self.buffer.len() - self.filled);
            let end = (self.filled + want).min(self.buffer.len());
            let n = self.stream.read(&mut self.buffer[self.filled..end])?;
            if n == 0 {
                bail!("connection closed");
            }
            self.filled += n;
        }
    }

    fn reserve(&mut self, want: usize) {
        if self.buffer.len() < self.filled + want {
            self.buffer.resize(self.filled + want, 0);
        }
    }
}

fn blocking_connect(addr: SocketAddr) -> anyhow::Result<std::net::TcpStream> {
    let stream = std::net::TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(stream)
}

fn blocking_send(
    stream: &mut std::net::TcpStream,
    wire: &[u8],
    send: Option<usize>,
) -> std::io::Result<()> {
    use std::io::Write;
    match send {
        None => stream.write_all(wire),
        Some(piece) => wire
            .chunks(piece)
            .try_for_each(|piece| stream.write_all(piece)),
    }
}

/// [`latency`] with a blocking client of this chunking (a thread, no runtime).
pub fn blocking_latency(
    addr: SocketAddr,
    chunking: Chunking,
    warmup: usize,
    calls: usize,
) -> anyhow::Result<Vec<u64>> {
    let mut stream = blocking_connect(addr)?;
    let mut reader = BlockingReader::new(stream.try_clone()?, chunking.recv);
    let mut template = call_record(BENCH_WRITE, &[0u8; 128])?;
    let mut times = Vec::with_capacity(calls);
    for i in 0..(warmup + calls) as u32 {
        template[4..8].copy_from_slice(&i.to_be_bytes());
        let start = Instant::now();
        blocking_send(&mut stream, &template, chunking.send)?;
        let (xid, _) = reader.next_reply()?;
        if xid != i {
            bail!("reply {xid} to call {i}");
        }
        if i as usize >= warmup {
            times.push(start.elapsed().as_nanos() as u64);
        }
    }
    Ok(times)
}

/// [`throughput`] with a blocking client: one thread writes calls (whole, or in pieces of
/// `chunking.send`), this one reads replies (`chunking.recv`), `in_flight` calls outstanding.
/// Returns the payload bytes moved in the flow's direction and the time taken.
pub fn blocking_throughput(
    addr: SocketAddr,
    flow: Flow,
    size: usize,
    in_flight: usize,
    duration: Duration,
    chunking: Chunking,
) -> anyhow::Result<(u64, Duration)> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let stream = blocking_connect(addr)?;
    let mut reader = BlockingReader::new(stream.try_clone()?, chunking.recv);
    let mut template = match flow {
        Flow::Write => call_record(BENCH_WRITE, &vec![0u8; size])?,
        Flow::Read => call_record(BENCH_READ, &(size as u32).to_be_bytes())?,
    };
    let slots = Arc::new(Slots {
        free: std::sync::Mutex::new(in_flight),
        freed: std::sync::Condvar::new(),
    });
    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + duration;
    let writer = {
        let (slots, sent, done) = (slots.clone(), sent.clone(), done.clone());
        let mut stream = stream;
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut xid = 0u32;
            let result = (|| {
                while Instant::now() < deadline {
                    slots.take(Duration::from_secs(30))?;
                    xid = xid.wrapping_add(1);
                    template[4..8].copy_from_slice(&xid.to_be_bytes());
                    blocking_send(&mut stream, &template, chunking.send)?;
                    sent.fetch_add(1, Ordering::SeqCst);
                }
                anyhow::Ok(())
            })();
            done.store(true, Ordering::SeqCst);
            result
        })
    };
    let mut replies = 0u64;
    let mut moved = 0u64;
    let result = (|| {
        loop {
            let finished = done.load(Ordering::SeqCst);
            if replies >= sent.load(Ordering::SeqCst) {
                if finished {
                    return anyhow::Ok(());
                }
                // Nothing outstanding: the writer is between calls.
                std::thread::sleep(Duration::from_micros(20));
                continue;
            }
            let (_, len) = reader.next_reply()?;
            replies += 1;
            moved += match flow {
                Flow::Write => size as u64,
                Flow::Read => len as u64,
            };
            slots.give(1);
        }
    })();
    let elapsed = start.elapsed();
    if result.is_err() {
        // Unblock a writer waiting for a slot.
        slots.give(in_flight);
        let _ = reader.stream.shutdown(std::net::Shutdown::Both);
    }
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))?;
    result.with_context(|| format!("{flow:?}: {replies} replies"))?;
    written?;
    Ok((moved, elapsed))
}

/// `clients` connections of the tokio client above at once, each with `in_flight` calls
/// outstanding. Returns the payload bytes moved by all of them and the longest time taken.
pub async fn concurrent_throughput(
    addr: SocketAddr,
    flow: Flow,
    size: usize,
    clients: usize,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<(u64, Duration)> {
    let runs = (0..clients)
        .map(|_| tokio::spawn(throughput(addr, flow, size, in_flight, duration)))
        .collect::<Vec<_>>();
    let mut moved = 0;
    let mut longest = Duration::ZERO;
    for run in runs {
        let (bytes, took) = run.await??;
        moved += bytes;
        longest = longest.max(took);
    }
    Ok((moved, longest))
}
