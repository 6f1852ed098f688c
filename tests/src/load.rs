//! A record-marked RPC load client: pipelined calls with verified replies, for resilience
//! tests and benchmarks. Speaks to anything that answers NFS-program calls (the proxy in front
//! of the fake mount target's echo responder, or the responder directly).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use efs_rpc::{CallHeader, Record, RecordCodec, RpcMessage, parse_accepted_reply};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore};
use tokio_util::codec::FramedRead;

/// NFS program number, so calls look like NFS to every layer.
pub use efs_rpc::nfs4::PROGRAM as NFS_PROGRAM;

/// One RPC connection with blocking-style calls.
pub struct RpcConnection {
    stream: TcpStream,
    next_xid: u32,
}

impl RpcConnection {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RpcConnection {
            stream,
            next_xid: 1,
        })
    }

    /// Calls `procedure` with `args` and returns the results (for the echo responder: `args`).
    pub async fn call(&mut self, procedure: u32, args: &[u8]) -> anyhow::Result<Vec<u8>> {
        let xid = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1);
        write_call(&mut self.stream, xid, procedure, args).await?;
        let reply = read_record(&mut self.stream)
            .await?
            .context("connection closed before the reply")?;
        let (got, results) = parse_accepted_reply(&reply)?;
        if got != xid {
            bail!("reply xid {got} for call {xid}");
        }
        Ok(results.to_vec())
    }
}

async fn write_call<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    xid: u32,
    procedure: u32,
    args: &[u8],
) -> anyhow::Result<()> {
    let message =
        RpcMessage::call(xid, CallHeader::new(NFS_PROGRAM, 4, procedure)).encode_with_body(args)?;
    w.write_all(Record::from_message(&message)?.wire()).await?;
    Ok(())
}

/// Reads one record (any number of fragments); `None` at a clean end of stream.
pub async fn read_record<R: AsyncReadExt + Unpin>(r: &mut R) -> anyhow::Result<Option<Vec<u8>>> {
    let mut message = Vec::new();
    loop {
        let mut mark = [0u8; 4];
        match r.read_exact(&mut mark).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && message.is_empty() => {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
        let mark = u32::from_be_bytes(mark);
        let start = message.len();
        message.resize(start + (mark & 0x7fff_ffff) as usize, 0);
        r.read_exact(&mut message[start..]).await?;
        if mark & 0x8000_0000 != 0 {
            return Ok(Some(message));
        }
    }
}

/// The payload of call `xid`: recognisable, so a reply delivered for the wrong call shows.
pub fn payload(xid: u32, size: usize) -> Vec<u8> {
    let seed = xid.to_be_bytes();
    (0..size).map(|i| seed[i % 4] ^ (i / 4) as u8).collect()
}

/// What a load run achieved.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub calls: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Replies whose payload did not match their call.
    pub corrupt: u64,
    /// The server side closed the connection before the run ended.
    pub closed_early: bool,
    /// Per-call round-trip times, in microseconds (sequential runs only).
    pub latencies_us: Vec<u64>,
}

impl LoadReport {
    pub fn mib_per_sec(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64()
    }
}

/// Echo load on one connection: `in_flight` calls of `size` bytes outstanding at any time,
/// every reply checked against its call, until `duration` has passed or `stop` is set.
pub async fn echo_load(
    addr: SocketAddr,
    duration: Duration,
    in_flight: usize,
    size: usize,
) -> anyhow::Result<LoadReport> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    // FramedRead buffers partial records, so a read abandoned in `select!` loses nothing.
    let mut read = FramedRead::new(read, RecordCodec::new(64 << 20));
    let slots = Arc::new(Semaphore::new(in_flight));
    let outstanding: Arc<Mutex<HashMap<u32, ()>>> = Arc::default();
    let start = Instant::now();
    let deadline = start + duration;

    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let writer = {
        let slots = slots.clone();
        let outstanding = outstanding.clone();
        tokio::spawn(async move {
            let _done = DoneOnDrop(done_tx);
            let mut xid = 0u32;
            while Instant::now() < deadline {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                permit.forget();
                xid = xid.wrapping_add(1);
                outstanding.lock().await.insert(xid, ());
                if write_call(&mut write, xid, 1, &payload(xid, size))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            write
        })
    };

    let mut report = LoadReport::default();
    loop {
        if *done_rx.borrow() && outstanding.lock().await.is_empty() {
            break;
        }
        let idle = outstanding.lock().await.is_empty();
        let next = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(30), read.next()) => r,
            _ = done_rx.changed(), if idle => continue,
        };
        let reply = match next {
            Ok(Some(Ok(reply))) => reply.message().to_vec(),
            Ok(None) | Ok(Some(Err(_))) => {
                report.closed_early = true;
                break;
            }
            Err(_) => bail!("no reply for 30 s"),
        };
        let (xid, results) = parse_accepted_reply(&reply)?;
        if outstanding.lock().await.remove(&xid).is_none() || results != payload(xid, size) {
            report.corrupt += 1;
        }
        report.calls += 1;
        report.bytes += 2 * size as u64;
        slots.add_permits(1);
    }
    slots.close();
    report.elapsed = start.elapsed();
    let _ = writer.await;
    Ok(report)
}

/// Signals the end of the writer task however it ends.
struct DoneOnDrop(tokio::sync::watch::Sender<bool>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}
