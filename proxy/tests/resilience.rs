//! Connection resilience and multiplexing against the fake mount target on loopback:
//! scale-up under load without the client noticing, partition mismatch, RETRY_LATER back-off,
//! a group connection killed mid-stream or while idle, a silent server, and no fd or memory
//! growth over many connections.

use std::path::Path;
use std::time::Duration;

use efs_proxy_tests::load::{LoadReport, RpcConnection, echo_load};
use efs_proxy_tests::process::ProxyProcess;
use efs_proxy_tests::{Backend, BindBehaviour, FakeMountTarget, Responder, TestBed};
use efs_rpc::awsfile::{BindClientResponse, BindResponse, ScaleUpConfig};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_efs-proxy"))
}

/// Scale up above 1 MB/s to three connections: loopback echo traffic crosses that at once.
fn scale_config() -> ScaleUpConfig {
    ScaleUpConfig {
        max_multiplexed_connections: 3,
        scale_up_bytes_per_sec_threshold: 1_000_000,
        scale_up_threshold_breached_duration_sec: 1,
        scale_up_lookback_window_size_sec: 1,
    }
}

async fn setup(bind: BindBehaviour, responder: Responder) -> TestBed {
    TestBed::start(bind, Backend::Responder(responder)).await
}

async fn proxy(setup: &TestBed, extra: &[&str]) -> ProxyProcess {
    ProxyProcess::spawn(bin(), setup.proxy_args(extra))
        .await
        .unwrap()
}

const WAIT: Duration = Duration::from_secs(15);

/// `seconds` of echo load through `proxy` (8 pipelined 64 KiB calls), which the client must
/// get through: no connection closed early, no corrupt reply.
async fn steady_load(proxy: &ProxyProcess, seconds: u64) -> LoadReport {
    let load = echo_load(proxy.addr(), Duration::from_secs(seconds), 8, 64 * 1024);
    let report = load.await.unwrap();
    assert!(
        !report.closed_early && report.corrupt == 0,
        "the client connection must stay up and intact: {report:?}"
    );
    report
}

/// How many of the target's connections carried records.
fn busy_connections(target: &FakeMountTarget) -> usize {
    let seen = target.observations();
    seen.records_by_connection
        .iter()
        .filter(|&&n| n > 0)
        .count()
}

#[tokio::test]
async fn scale_up_adds_connections_without_the_client_noticing() {
    let setup = setup(
        BindBehaviour::ready_with(0x11, scale_config()),
        Responder::Echo,
    )
    .await;
    let proxy = proxy(&setup, &[]).await;
    let report = steady_load(&proxy, 7).await;
    assert!(report.calls > 100, "{report:?}");

    let log = proxy
        .wait_for_log("scale-up: added connection 3", WAIT)
        .await
        .unwrap();
    let seen = setup.target.observations();
    // Two wanted, three attempts in flight: the third may bind before it is called off.
    assert!((3..=4).contains(&seen.binds.len()), "{log}");
    assert!(
        seen.binds.iter().all(|b| *b == seen.binds[0]),
        "one incarnation for the whole group: {:?}",
        seen.binds
    );
    assert_eq!(
        busy_connections(&setup.target),
        3,
        "records spread over the group: {:?}",
        seen.records_by_connection
    );
}

#[tokio::test]
async fn a_connection_bound_to_another_partition_is_closed_not_used() {
    let other = BindBehaviour::ready_with(0x22, scale_config());
    let ours = BindBehaviour::ready_with(0x11, scale_config());
    let bind = BindBehaviour::Sequence(vec![ours.clone(), other, ours]);
    let setup = setup(bind, Responder::Echo).await;
    let proxy = proxy(&setup, &[]).await;
    steady_load(&proxy, 7).await;
    proxy
        .wait_for_log("scale-up: added connection 3", WAIT)
        .await
        .unwrap();
    let seen = setup.target.observations();
    assert!(
        seen.binds.len() >= 4,
        "the mismatched bind is one more: {}",
        seen.binds.len()
    );
    assert_eq!(
        busy_connections(&setup.target),
        3,
        "only partition 0x11 carries records: {:?}",
        seen.records_by_connection
    );
}

#[tokio::test]
async fn retry_later_stops_the_search_and_backs_off() {
    let retry = BindBehaviour::Reply(BindClientResponse {
        bind_response: BindResponse::RetryLater("busy".into()),
        scale_up_config: scale_config(),
    });
    let bind =
        BindBehaviour::Sequence(vec![BindBehaviour::ready_with(0x11, scale_config()), retry]);
    let setup = setup(bind, Responder::Echo).await;
    let proxy = proxy(&setup, &[]).await;
    steady_load(&proxy, 5).await;
    proxy
        .wait_for_log("backing off for 300s", WAIT)
        .await
        .unwrap();
    // Attempts already in flight when RETRY_LATER came still finish their bind.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_first_search = setup.target.observations().binds.len();
    assert!(
        (2..=4).contains(&after_first_search),
        "one search, at most 3 attempts: {after_first_search}"
    );
    // A new client connection above the threshold: the back-off is the proxy's, not the
    // connection's, so no new search (one bind for the new connection only).
    steady_load(&proxy, 5).await;
    assert_eq!(
        setup.target.observations().binds.len(),
        after_first_search + 1
    );
    let log = proxy.log();
    assert_eq!(log.matches("more connections").count(), 1, "{log}");
}

/// A connection the scale-up added to the group (it carried records), not the first one;
/// waits for the group to carry records on one.
async fn busy_scale_up_connection(target: &FakeMountTarget) -> usize {
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let seen = target.observations();
        let busy = seen
            .records_by_connection
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, n)| **n > 0)
            .map(|(i, _)| i);
        if let Some(index) = busy {
            return index;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no scale-up connection carried records: {:?}",
            seen.records_by_connection
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_group_connection_killed_mid_stream_ends_the_client_connection_cleanly() {
    let setup = setup(
        BindBehaviour::ready_with(0x11, scale_config()),
        Responder::Echo,
    )
    .await;
    let proxy = proxy(&setup, &[]).await;
    let load = tokio::spawn(echo_load(
        proxy.addr(),
        Duration::from_secs(30),
        8,
        64 * 1024,
    ));
    proxy
        .wait_for_log("scale-up: added connection 3", WAIT)
        .await
        .unwrap();
    // Calls sent to this connection from now on stay in flight; then it dies.
    let victim = busy_scale_up_connection(&setup.target).await;
    setup.target.mute_connection(victim);
    // Any call counted after this point is one the muted connection will never answer.
    let answered = setup.target.observations().records_by_connection[victim];
    let until = tokio::time::Instant::now() + WAIT;
    while setup.target.observations().records_by_connection[victim] == answered {
        assert!(
            tokio::time::Instant::now() < until,
            "no call reached the muted connection"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    setup.target.kill_connection(victim);
    let report = tokio::time::timeout(Duration::from_secs(20), load)
        .await
        .expect("the client sees the end quickly")
        .unwrap()
        .unwrap();
    assert!(
        report.closed_early,
        "calls were in flight: the client must reconnect"
    );
    assert_eq!(report.corrupt, 0);
    proxy
        .wait_for_log("failed with calls in flight", WAIT)
        .await
        .unwrap();
    // The client reconnects, as the kernel would, and carries on.
    let mut again = RpcConnection::connect(proxy.addr()).await.unwrap();
    assert_eq!(again.call(1, b"more").await.unwrap(), b"more");
}

#[tokio::test]
async fn a_group_connection_that_dies_idle_is_dropped_and_the_client_continues() {
    let setup = setup(
        BindBehaviour::ready_with(0x11, scale_config()),
        Responder::Echo,
    )
    .await;
    let proxy = proxy(&setup, &[]).await;
    let addr = proxy.addr();
    let mut client = RpcConnection::connect(addr).await.unwrap();
    // Drive throughput over the threshold on this connection, one call at a time.
    let big = vec![7u8; 256 * 1024];
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while !proxy.log().contains("scale-up: added connection 3") {
        assert!(tokio::time::Instant::now() < until, "{}", proxy.log());
        assert_eq!(client.call(1, &big).await.unwrap(), big);
    }
    // Make sure every leg has carried a call, then (every call has its reply: nothing is in
    // flight) kill a connection of the group.
    for _ in 0..6 {
        assert_eq!(client.call(1, &big).await.unwrap(), big);
    }
    setup
        .target
        .kill_connection(busy_scale_up_connection(&setup.target).await);
    proxy
        .wait_for_log("failed with no call in flight", WAIT)
        .await
        .unwrap();
    for i in 0..20u32 {
        let body = i.to_be_bytes();
        assert_eq!(client.call(1, &body).await.unwrap(), body, "call {i}");
    }
}

#[tokio::test]
async fn a_server_that_stops_answering_is_detected_within_the_timeout() {
    let setup = setup(BindBehaviour::ready(1), Responder::Silent).await;
    let proxy = proxy(&setup, &["--server-timeout", "2"]).await;
    let started = std::time::Instant::now();
    let report = echo_load(proxy.addr(), Duration::from_secs(30), 1, 16)
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(report.closed_early, "{report:?}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    assert!(
        took >= Duration::from_secs(2),
        "not before the timeout: {took:?}"
    );
    proxy
        .wait_for_log("server did not answer outstanding calls for 2s", WAIT)
        .await
        .unwrap();
}

/// Open file descriptors and resident memory of a process.
fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    (fds, rss_kib)
}

#[tokio::test]
async fn a_thousand_connections_and_two_hundred_at_once_leave_no_fds_or_memory_behind() {
    let setup = setup(BindBehaviour::ready(1), Responder::Echo).await;
    let proxy = proxy(&setup, &[]).await;
    let addr = proxy.addr();
    let pid = proxy.pid();

    // Warm-up: 200 concurrent clients, then all closed.
    let round = |n: usize| async move {
        let clients: Vec<_> = (0..n)
            .map(|i| {
                tokio::spawn(async move {
                    let mut c = RpcConnection::connect(addr).await.unwrap();
                    let body = (i as u32).to_be_bytes();
                    assert_eq!(c.call(1, &body).await.unwrap(), body);
                    c
                })
            })
            .collect();
        let mut open = Vec::new();
        for c in clients {
            open.push(c.await.unwrap());
        }
        open
    };
    let open = round(200).await;
    let (fds_busy, _) = fds_and_rss(pid);
    drop(open);
    let settle = || async {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    settle().await;
    let (fds_before, rss_before) = fds_and_rss(pid);
    assert!(
        fds_busy >= fds_before + 400,
        "200 clients hold 2 fds each: {fds_busy} vs {fds_before}"
    );

    for i in 0..1000u32 {
        let mut c = RpcConnection::connect(addr).await.unwrap();
        assert_eq!(c.call(1, &i.to_be_bytes()).await.unwrap(), i.to_be_bytes());
    }
    let open = round(200).await;
    drop(open);
    settle().await;
    let (fds_after, rss_after) = fds_and_rss(pid);
    eprintln!(
        "proxy fds {fds_before} -> {fds_after}, RSS {rss_before} KiB -> {rss_after} KiB after 1000 \
         sequential and 200 concurrent connections"
    );
    assert_eq!(fds_after, fds_before, "no fd outlives its connection");
    assert!(
        rss_after < rss_before + 8 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert_eq!(setup.target.observations().binds.len(), 1400);
}

/// An NFSv4.1 COMPOUND call (empty tag) whose first operation is `op`, padded to `size`.
fn compound(xid: u32, op: u32, size: usize) -> Vec<u8> {
    let mut body = vec![0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
    body.extend(op.to_be_bytes());
    body.resize(size.max(body.len()), 0xab);
    let message = efs_rpc::RpcMessage::call(xid, efs_rpc::CallHeader::new(100_003, 4, 1))
        .encode_with_body(&body)
        .unwrap();
    efs_rpc::Record::from_message(&message)
        .unwrap()
        .wire()
        .to_vec()
}

/// RFC 8881 §2.10.3.1 under forced scale-up: with three server connections for one client
/// connection, every COMPOUND that does not start with SEQUENCE (EXCHANGE_ID, CREATE_SESSION,
/// BIND_CONN_TO_SESSION, DESTROY_SESSION, DESTROY_CLIENTID) goes on the first connection, where
/// the session was created and is bound; SEQUENCE-led ones keep spreading.
#[tokio::test]
async fn session_management_stays_on_the_first_connection_under_scale_up() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let setup = setup(
        BindBehaviour::ready_with(0x11, scale_config()),
        Responder::Echo,
    )
    .await;
    let proxy = proxy(&setup, &[]).await;
    let mut client = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut read, mut write) = client.split();
    let mut xid = 0u32;
    let mut exchange = async |ops: Vec<u32>, size: usize| {
        let mut burst = Vec::new();
        let mut sent = Vec::new();
        for op in ops {
            xid += 1;
            burst.extend(compound(xid, op, size));
            sent.push((xid, op));
        }
        let writing = async { write.write_all(&burst).await.unwrap() };
        let reading = async {
            for _ in 0..sent.len() {
                let mut mark = [0u8; 4];
                read.read_exact(&mut mark).await.unwrap();
                let mut reply = vec![0; (u32::from_be_bytes(mark) & 0x7fff_ffff) as usize];
                read.read_exact(&mut reply).await.unwrap();
            }
        };
        tokio::join!(writing, reading);
        sent
    };
    let until = tokio::time::Instant::now() + WAIT;
    while setup.target.observations().handshakes < 3 {
        assert!(tokio::time::Instant::now() < until, "{}", proxy.log());
        exchange(vec![53; 8], 64 * 1024).await;
    }
    let management = [42, 43, 41, 44, 57];
    // Each management call follows large SEQUENCE-led ones, when the first connection is
    // the busiest: spreading by load alone would send it elsewhere.
    let ops: Vec<u32> = (0..120)
        .map(|i| {
            if i % 4 == 3 {
                management[i / 4 % 5]
            } else {
                53
            }
        })
        .collect();
    let sent = exchange(ops, 64 * 1024).await;

    let seen = setup.target.observations();
    let first = &seen.xids_by_connection[0];
    for (xid, op) in &sent {
        if *op != 53 {
            assert!(
                first.contains(xid),
                "op {op} (xid {xid}) left the first connection"
            );
        }
    }
    let elsewhere = sent.iter().filter(|(xid, _)| !first.contains(xid)).count();
    assert!(
        elsewhere > 0,
        "SEQUENCE-led calls still spread over the group"
    );
}
