//! `rpc-ping`: a tiny RPC client for fault-injection scripts (tests/e2e/faults-netns.sh).
//!
//! Sends one small NFS-program call at a time (echoed back by the fake mount target's `echo`
//! backend, through the proxy), one every `--interval-ms`, checks each reply, and reconnects
//! whenever the connection closes. While idle between calls it watches the socket, so a close
//! is seen when it happens, not at the next call. One machine-readable line per event on
//! stdout (flushed at once); `t` is seconds since start, `at` is Unix time (as bash's
//! `$EPOCHREALTIME`), durations are seconds:
//!
//! ```text
//! CONNECTED t=0.002 at=1764201000.123456 n=1
//! CLOSED t=5.112 at=... since_last_reply=3.104 waited=3.003 replies_on_conn=48 reason=eof
//! CONNECT_FAILED t=... at=... error=...
//! FIRST_REPLY t=... at=... n=2 since_connect=0.015 (the first reply on connection n)
//! RESUMED t=... at=... gap=4.210                  (a reply after a gap > 3 intervals)
//! BAD t=... at=... error=...                      (wrong xid or payload; the connection is dropped)
//! SUMMARY calls=120 closes=1 connects=2 bad=0 max_gap=4.210 since_last_reply=0.050 elapsed=12.01
//! ```
//!
//! `SUMMARY` is printed at the end of `--duration`, or on SIGTERM/SIGINT. `max_gap` is the
//! longest time between two replies (or from the last reply to the end, if longer).

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use efs_proxy_tests::load::{NFS_PROGRAM, payload, read_record};
use efs_rpc::{CallHeader, Record, RpcMessage, parse_accepted_reply};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    name = "rpc-ping",
    about = "Sequential small RPC echo calls with reconnects, one event line each"
)]
struct Args {
    /// Where to connect (the proxy's listen address).
    #[arg(long)]
    addr: SocketAddr,
    /// Stop after this many seconds (0: run until SIGTERM or SIGINT).
    #[arg(long, default_value_t = 0.0)]
    duration: f64,
    /// Pause between a reply and the next call, in milliseconds.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Argument bytes per call (echoed back).
    #[arg(long, default_value_t = 64)]
    size: usize,
}

/// Why a connection ended.
enum End {
    Closed(&'static str),
    Bad(String),
}

struct State {
    start: Instant,
    interval: Duration,
    size: usize,
    calls: u64,
    closes: u64,
    connects: u64,
    bad: u64,
    last_reply: Instant,
    max_gap: Duration,
    xid: u32,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl State {
    fn event(&self, what: &str, rest: std::fmt::Arguments<'_>) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{what} t={:.3} at={:.6} {rest}",
            self.start.elapsed().as_secs_f64(),
            unix_now()
        );
        let _ = out.flush();
    }

    fn since_last_reply(&self) -> f64 {
        self.last_reply.elapsed().as_secs_f64()
    }

    /// One call on `stream`; `Ok(())` when the right reply came back.
    async fn call(&mut self, stream: &mut TcpStream) -> Result<(), End> {
        self.xid = self.xid.wrapping_add(1);
        let xid = self.xid;
        let body = payload(xid, self.size);
        let message = RpcMessage::call(xid, CallHeader::new(NFS_PROGRAM, 4, 1))
            .encode_with_body(&body)
            .map_err(|e| End::Bad(format!("encode: {e}")))?;
        let record = Record::from_message(&message).map_err(|e| End::Bad(format!("{e}")))?;
        if stream.write_all(record.wire()).await.is_err() {
            return Err(End::Closed("write-failed"));
        }
        let reply = match read_record(stream).await {
            Ok(Some(reply)) => reply,
            Ok(None) => return Err(End::Closed("eof")),
            Err(_) => return Err(End::Closed("reset")),
        };
        match parse_accepted_reply(&reply) {
            Ok((got, results)) if got == xid && results == body => Ok(()),
            Ok((got, _)) => Err(End::Bad(format!(
                "reply xid {got} (or its payload) for call {xid}"
            ))),
            Err(e) => Err(End::Bad(format!("reply for call {xid}: {e}"))),
        }
    }

    fn replied(&mut self) {
        let gap = self.last_reply.elapsed();
        self.max_gap = self.max_gap.max(gap);
        self.calls += 1;
        self.last_reply = Instant::now();
        if gap > self.interval * 3 + Duration::from_millis(200) {
            self.event("RESUMED", format_args!("gap={:.3}", gap.as_secs_f64()));
        }
    }

    /// Waits `interval` while watching the idle socket; `Err` if it closes meanwhile.
    async fn idle(&self, stream: &TcpStream) -> Result<(), End> {
        let mut byte = [0u8; 1];
        tokio::select! {
            _ = tokio::time::sleep(self.interval) => Ok(()),
            r = stream.peek(&mut byte) => match r {
                Ok(0) => Err(End::Closed("eof")),
                Ok(_) => Err(End::Bad("bytes arrived with no call outstanding".into())),
                Err(_) => Err(End::Closed("reset")),
            },
        }
    }

    /// Calls on one connection until it ends.
    async fn serve(&mut self, stream: &mut TcpStream) -> (End, u64, Option<Instant>) {
        let connected = Instant::now();
        let mut replies = 0;
        loop {
            let sent = Instant::now();
            match self.call(stream).await {
                Ok(()) => {
                    replies += 1;
                    self.replied();
                    if replies == 1 {
                        self.event(
                            "FIRST_REPLY",
                            format_args!(
                                "n={} since_connect={:.3}",
                                self.connects,
                                connected.elapsed().as_secs_f64()
                            ),
                        );
                    }
                }
                Err(end) => return (end, replies, Some(sent)),
            }
            if let Err(end) = self.idle(stream).await {
                return (end, replies, None);
            }
        }
    }

    async fn run(&mut self, addr: SocketAddr) {
        loop {
            let mut stream = match TcpStream::connect(addr).await {
                Ok(s) => s,
                Err(e) => {
                    self.event("CONNECT_FAILED", format_args!("error={}", e.kind()));
                    tokio::time::sleep(self.interval).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            self.connects += 1;
            self.event("CONNECTED", format_args!("n={}", self.connects));
            let (end, replies, call_sent) = self.serve(&mut stream).await;
            let waited = call_sent.map_or(0.0, |s| s.elapsed().as_secs_f64());
            match end {
                End::Closed(reason) => {
                    self.closes += 1;
                    self.event(
                        "CLOSED",
                        format_args!(
                            "since_last_reply={:.3} waited={waited:.3} replies_on_conn={replies} \
                             reason={reason}",
                            self.since_last_reply()
                        ),
                    );
                }
                End::Bad(error) => {
                    self.bad += 1;
                    self.event("BAD", format_args!("error={error:?}"));
                }
            }
        }
    }

    fn summary(&mut self) {
        let open = self.last_reply.elapsed();
        self.max_gap = self.max_gap.max(open);
        println!(
            "SUMMARY calls={} closes={} connects={} bad={} max_gap={:.3} since_last_reply={:.3} \
             elapsed={:.2}",
            self.calls,
            self.closes,
            self.connects,
            self.bad,
            self.max_gap.as_secs_f64(),
            open.as_secs_f64(),
            self.start.elapsed().as_secs_f64()
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let now = Instant::now();
    let mut state = State {
        start: now,
        interval: Duration::from_millis(args.interval_ms),
        size: args.size,
        calls: 0,
        closes: 0,
        connects: 0,
        bad: 0,
        last_reply: now,
        max_gap: Duration::ZERO,
        xid: 0,
    };
    {
        let run = state.run(args.addr);
        let limit = async {
            if args.duration > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = run => {}
            _ = limit => {}
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    state.summary();
    Ok(())
}
