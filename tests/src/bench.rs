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

/// CPU time (user + system, children that exited included) of a process so far.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').context("odd /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14-17 of the full line: 11-14 here.
    let ticks: u64 = fields[11..15]
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    Ok(Duration::from_millis(ticks * 1000 / clock_ticks()))
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
