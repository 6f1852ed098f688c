//! The `efs-proxy` binary against the fake mount target: records through TLS, client
//! certificate and bind; many clients at once; every failure mode with its message; record
//! limits in both directions.

use std::net::SocketAddr;
use std::time::Duration;

use efs_proxy_tests::bed::plaintext_target;
use efs_proxy_tests::client::{NFS_PROGRAM, call, read_record, send_call};
use efs_proxy_tests::process::{ProxyProcess, run_to_exit};
use efs_proxy_tests::{
    Backend, BindBehaviour, ProxyArgs, Responder, SERVER_NAME, TestBed, TestPki,
};
use efs_rpc::{CallHeader, RpcMessage, parse_accepted_reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn bin() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_efs-proxy"))
}
const LOG_WAIT: Duration = Duration::from_secs(10);

async fn setup(bind: BindBehaviour, backend: Backend) -> TestBed {
    TestBed::start(bind, backend).await
}

/// The test bed's standard arguments with short connect and bind timeouts.
fn args(setup: &TestBed) -> ProxyArgs {
    setup
        .run_with_cert()
        .with("--connect-timeout", "2")
        .with("--bind-timeout", "2")
}

/// Waits until the peer closes the connection; true if it did within 10 s.
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let wait = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .is_ok()
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

#[tokio::test]
async fn null_call_and_1_mib_record_pass_through_tls_certificate_and_bind() {
    let setup = setup(
        BindBehaviour::ready(0xa0),
        Backend::Responder(Responder::Echo),
    )
    .await;
    let proxy = ProxyProcess::spawn(bin(), args(&setup)).await.unwrap();
    let mut client = connect(proxy.addr()).await;

    assert!(
        call(&mut client, 1, 0, &[]).await.is_empty(),
        "NULL has no results"
    );
    let payload: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(call(&mut client, 2, 1, &payload).await, payload);

    let seen = setup.target.observations();
    assert_eq!(seen.handshakes, 1);
    assert_eq!(seen.server_names, vec![Some(SERVER_NAME.to_string())]);
    assert_eq!(seen.client_certs, vec![setup.pki.client.cert_der.to_vec()]);
    assert_eq!(seen.binds.len(), 1);
    assert_eq!(seen.binds[0].identifier.len(), 16);
    assert_eq!(seen.binds[0].incarnation_number(), Some(1));
    assert_eq!(seen.records, 2);
    let log = proxy.wait_for_log("READY", LOG_WAIT).await.unwrap();
    assert!(log.contains("partition a0a0a0a0"), "{log}");
}

/// `--server-timeout` at its largest: the deadline would overflow the clock, so it means no
/// deadline (this call used to panic the session's task on `Instant + Duration`).
#[tokio::test]
async fn the_largest_server_timeout_does_not_overflow() {
    let setup = setup(
        BindBehaviour::ready(0xa1),
        Backend::Responder(Responder::Echo),
    )
    .await;
    let proxy_args = args(&setup).with("--server-timeout", u64::MAX.to_string());
    let proxy = ProxyProcess::spawn(bin(), proxy_args).await.unwrap();
    let mut client = connect(proxy.addr()).await;
    assert!(call(&mut client, 1, 0, &[]).await.is_empty());
    assert_eq!(call(&mut client, 2, 1, b"abcd").await, b"abcd");
}

#[tokio::test]
async fn a_hundred_clients_are_served_at_once() {
    let setup = setup(BindBehaviour::ready(1), Backend::Responder(Responder::Echo)).await;
    let proxy = ProxyProcess::spawn(bin(), args(&setup)).await.unwrap();
    // Open all hundred connections first, so they are all open at the same time.
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(connect(proxy.addr()).await);
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            tokio::spawn(async move {
                for round in 0..5u32 {
                    let body = format!("client {i} round {round}").into_bytes();
                    let mut padded = body.clone();
                    padded.resize(body.len().div_ceil(4) * 4, 0);
                    assert_eq!(call(&mut client, round, 1, &padded).await, padded);
                }
                client
            })
        })
        .collect();
    let mut open = Vec::new();
    for task in tasks {
        open.push(task.await.unwrap());
    }
    let seen = setup.target.observations();
    assert_eq!(seen.handshakes, 100);
    assert_eq!(seen.binds.len(), 100);
    assert_eq!(seen.records, 500);
    let mut incarnations: Vec<_> = seen
        .binds
        .iter()
        .filter_map(|b| b.incarnation_number())
        .collect();
    incarnations.sort();
    assert_eq!(
        incarnations,
        (1..=100).collect::<Vec<_>>(),
        "one incarnation per connection"
    );
    drop(open);
}

#[tokio::test]
async fn a_port_probe_opens_no_server_connection() {
    let setup = setup(BindBehaviour::ready(1), Backend::Responder(Responder::Echo)).await;
    let proxy = ProxyProcess::spawn(bin(), args(&setup)).await.unwrap();
    drop(connect(proxy.addr()).await); // the mount helper's probe
    let mut client = connect(proxy.addr()).await;
    call(&mut client, 9, 0, &[]).await;
    assert_eq!(setup.target.observations().connections, 1);
}

#[tokio::test]
async fn a_server_without_awsfile_gets_records_without_bind() {
    for (behaviour, name) in [
        (BindBehaviour::ProgUnavail, "PROG_UNAVAIL"),
        (
            BindBehaviour::parse("garbage").unwrap(),
            "malformed RPC reply",
        ),
    ] {
        let setup = setup(behaviour, Backend::Responder(Responder::Echo)).await;
        let proxy = ProxyProcess::spawn(bin(), args(&setup)).await.unwrap();
        for xid in 0..3 {
            // Each client connection retries the bind and falls back again.
            let mut client = connect(proxy.addr()).await;
            assert_eq!(call(&mut client, xid, 1, b"data").await, b"data");
        }
        let log = proxy
            .wait_for_log("does not speak AWSFILE", LOG_WAIT)
            .await
            .unwrap();
        assert!(log.contains(name), "{name}: {log}");
        assert_eq!(
            log.matches("does not speak AWSFILE").count(),
            1,
            "logged once: {log}"
        );
        assert_eq!(setup.target.observations().binds.len(), 3);
    }
}

#[tokio::test]
async fn retry_later_and_error_replies_are_accepted_on_the_first_connection() {
    for (spelling, shown) in [("retry-later", "RETRY_LATER"), ("error", "ERROR")] {
        let setup = setup(
            BindBehaviour::parse(spelling).unwrap(),
            Backend::Responder(Responder::Echo),
        )
        .await;
        let proxy = ProxyProcess::spawn(bin(), args(&setup)).await.unwrap();
        let mut client = connect(proxy.addr()).await;
        assert_eq!(call(&mut client, 4, 1, b"abcd").await, b"abcd");
        let log = proxy.wait_for_log(shown, LOG_WAIT).await.unwrap();
        assert!(log.contains("forwarding; bind:"), "{log}");
    }
}

/// Starts the proxy with `args`, makes one client connection and returns the proxy's log once
/// it contains `expected`; also checks that the client connection was closed.
async fn expect_failure(args: ProxyArgs, expected: &[&str]) -> String {
    let proxy = ProxyProcess::spawn(bin(), args).await.unwrap();
    let mut client = connect(proxy.addr()).await;
    send_call(&mut client, 1, 0, &[]).await.unwrap();
    assert!(
        closed_by_peer(&mut client).await,
        "client connection must be closed"
    );
    let log = proxy
        .wait_for_log(expected[0], LOG_WAIT)
        .await
        .unwrap_or_else(|log| panic!("expected {expected:?} in:\n{log}"));
    for needle in expected {
        assert!(log.contains(needle), "expected {needle:?} in:\n{log}");
    }
    log
}

#[tokio::test]
async fn dns_failure_names_the_layer() {
    let setup = setup(BindBehaviour::ready(1), Backend::Responder(Responder::Echo)).await;
    let args = args(&setup).with("--target", "no-such-host.invalid:2049");
    expect_failure(
        args,
        &["layer=dns", "cannot resolve no-such-host.invalid:2049"],
    )
    .await;
}

#[tokio::test]
async fn refused_tcp_connection_names_the_layer() {
    let setup = setup(BindBehaviour::ready(1), Backend::Responder(Responder::Echo)).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let args = args(&setup).with("--target", format!("127.0.0.1:{port}"));
    expect_failure(
        args,
        &["layer=tcp", "refused", "security group allows TCP 2049"],
    )
    .await;
}

#[tokio::test]
async fn certificate_name_mismatch_names_the_server_name() {
    let setup = setup(BindBehaviour::ready(1), Backend::Responder(Responder::Echo)).await;
    let args = args(&setup).with("--server-name", "fs-ffffffff.efs.us-east-1.amazonaws.com");
    expect_failure(
        args,
        &[
            "layer=tls",
            "fs-ffffffff.efs.us-east-1.amazonaws.com",
            "--server-name must be",
        ],
    )
    .await;
}

#[tokio::test]
async fn unknown_ca_is_reported() {
    let setup = setup(BindBehaviour::ready(1), Backend::Responder(Responder::Echo)).await;
    let other = TestPki::generate(&[SERVER_NAME]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let other_files = other.write(dir.path()).unwrap();
    let args = args(&setup).with("--ca-file", other_files.ca.to_str().unwrap());
    expect_failure(args, &["layer=tls", "unknown CA", "--ca-file"]).await;
}

#[tokio::test]
async fn missing_client_certificate_is_reported_as_refused_by_the_server() {
    let setup = setup(BindBehaviour::ready(1), Backend::Responder(Responder::Echo)).await;
    let args = args(&setup).without("--cert").without("--key");
    expect_failure(args, &["rejected our client certificate"]).await;
}

#[tokio::test]
async fn bind_without_reply_times_out() {
    let setup = setup(BindBehaviour::Silent, Backend::Responder(Responder::Echo)).await;
    let args = args(&setup).with("--bind-timeout", "1");
    expect_failure(args, &["layer=bind", "no reply within 1s"]).await;
}

/// As efs-proxy: a bind that ends in EOF is followed by a fresh connection without bind, so the
/// mount works (without multiplexing) instead of failing on every reconnect.
#[tokio::test]
async fn bind_answered_by_a_close_falls_back_to_a_fresh_connection_without_bind() {
    let setup = setup(BindBehaviour::Close, Backend::Responder(Responder::Echo)).await;
    let proxy = ProxyProcess::spawn(bin(), args(&setup)).await.unwrap();
    let mut client = connect(proxy.addr()).await;
    assert_eq!(call(&mut client, 5, 1, b"after-eof").await, b"after-eof");
    let log = proxy
        .wait_for_log("forwarding without bind on a fresh connection", LOG_WAIT)
        .await
        .unwrap();
    assert!(
        log.contains("closed the connection instead of answering"),
        "{log}"
    );
    let seen = setup.target.observations();
    assert_eq!((seen.connections, seen.binds.len()), (2, 1));
}

/// A longer reply than efs-utils 3.2.0 knows is still a bind (efs-proxy ignores the rest).
#[tokio::test]
async fn bytes_after_the_bind_reply_are_ignored() {
    let extended = BindBehaviour::Extended(
        efs_rpc::awsfile::BindClientResponse {
            bind_response: efs_rpc::awsfile::BindResponse::Ready(efs_rpc::awsfile::PartitionId(
                [3; 64],
            )),
            scale_up_config: Default::default(),
        },
        vec![0, 0, 0, 1, 0, 0, 0, 2],
    );
    let setup = setup(extended, Backend::Responder(Responder::Echo)).await;
    let args = args(&setup)
        .with("--log-level", "debug")
        .and(&["--no-scale-up"]);
    let proxy = ProxyProcess::spawn(bin(), args).await.unwrap();
    let mut client = connect(proxy.addr()).await;
    assert_eq!(call(&mut client, 6, 1, b"bound").await, b"bound");
    let log = proxy.wait_for_log("bind: READY", LOG_WAIT).await.unwrap();
    assert!(
        log.contains("8 bytes after the BindClientResponse"),
        "{log}"
    );
    assert!(!log.contains("does not speak AWSFILE"), "{log}");
    assert_eq!(setup.target.observations().connections, 1);
}

#[tokio::test]
async fn a_target_that_never_speaks_tls_times_out_in_the_tls_layer() {
    let setup = setup(BindBehaviour::ready(1), Backend::Responder(Responder::Echo)).await;
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mute_addr = mute.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = mute.accept().await {
            held.push(s);
        }
    });
    let args = args(&setup)
        .with("--target", mute_addr.to_string())
        .with("--connect-timeout", "1");
    expect_failure(args, &["layer=tls", "timed out after 1s"]).await;
    held.abort();
}

#[tokio::test]
async fn a_plain_nfs_port_is_not_mistaken_for_tls() {
    let setup = setup(BindBehaviour::ready(1), Backend::Responder(Responder::Echo)).await;
    // A plaintext fake target stands in for an NFS server reached without TLS.
    let plain = plaintext_target(BindBehaviour::ProgUnavail).await;
    let args = args(&setup).with("--target", plain.addr().to_string());
    expect_failure(args, &["layer=tls", "is the target a TLS endpoint"]).await;
}

#[tokio::test]
async fn oversized_client_record_closes_only_that_connection() {
    let setup = setup(BindBehaviour::ready(1), Backend::Responder(Responder::Echo)).await;
    let proxy = ProxyProcess::spawn(bin(), args(&setup).with("--max-record-size", "65536"))
        .await
        .unwrap();
    let mut healthy = connect(proxy.addr()).await;
    call(&mut healthy, 1, 0, &[]).await;

    let mut bad = connect(proxy.addr()).await;
    // A record mark announcing 2 GiB - 1: refused from the header, nothing allocated.
    bad.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1])
        .await
        .unwrap();
    assert!(closed_by_peer(&mut bad).await);
    let log = proxy
        .wait_for_log("client side failed", LOG_WAIT)
        .await
        .unwrap();
    assert!(
        log.contains("exceeds the maximum record size of 65536"),
        "{log}"
    );

    let mut zero = connect(proxy.addr()).await;
    zero.write_all(&[0x80, 0, 0, 0]).await.unwrap();
    assert!(closed_by_peer(&mut zero).await);
    proxy
        .wait_for_log("zero-length fragment", LOG_WAIT)
        .await
        .unwrap();

    // A record within the limit split into many fragments is reassembled and forwarded.
    let message = RpcMessage::call(77, CallHeader::new(NFS_PROGRAM, 4, 1))
        .encode_with_body(&[5u8; 60_000])
        .unwrap();
    let mut wire = Vec::new();
    let chunks: Vec<&[u8]> = message.chunks(1000).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = if i + 1 == chunks.len() {
            0x8000_0000
        } else {
            0
        };
        wire.extend((chunk.len() as u32 | last).to_be_bytes());
        wire.extend(*chunk);
    }
    healthy.write_all(&wire).await.unwrap();
    let reply = read_record(&mut healthy).await.unwrap();
    assert_eq!(
        parse_accepted_reply(&reply).unwrap(),
        (77, &[5u8; 60_000][..])
    );
}

#[tokio::test]
async fn oversized_server_record_closes_the_client_connection() {
    let setup = setup(
        BindBehaviour::ready(1),
        Backend::Responder(Responder::Fixed(100_000)),
    )
    .await;
    let proxy = ProxyProcess::spawn(bin(), args(&setup).with("--max-record-size", "65536"))
        .await
        .unwrap();
    let mut client = connect(proxy.addr()).await;
    send_call(&mut client, 3, 1, &[]).await.unwrap();
    assert!(closed_by_peer(&mut client).await);
    let log = proxy
        .wait_for_log("server side failed", LOG_WAIT)
        .await
        .unwrap();
    assert!(
        log.contains("exceeds the maximum record size of 65536"),
        "{log}"
    );
}

#[tokio::test]
async fn startup_errors_are_one_clear_line_not_a_panic() {
    let setup = setup(BindBehaviour::ready(1), Backend::Responder(Responder::Echo)).await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cases = [
        (
            args(&setup).with("--listen", busy.local_addr().unwrap().to_string()),
            "cannot listen on",
        ),
        (
            args(&setup).with("--ca-file", "/nonexistent/ca.pem"),
            "/nonexistent/ca.pem",
        ),
        (
            args(&setup).with("--key", "/nonexistent/key.pem"),
            "/nonexistent/key.pem",
        ),
        (
            args(&setup).with("--server-name", "not a name!"),
            "invalid server name",
        ),
    ];
    for (args, expected) in cases {
        let (code, stdout, stderr) = run_to_exit(bin(), &args).await.unwrap();
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        // The operating system's cause is printed once, not once per layer.
        assert!(stderr.matches("(os error").count() <= 1, "{stderr}");
    }
}

#[tokio::test]
async fn sigterm_stops_the_proxy_cleanly() {
    let setup = setup(BindBehaviour::ready(1), Backend::Responder(Responder::Echo)).await;
    let proxy = ProxyProcess::spawn(bin(), args(&setup)).await.unwrap();
    let mut client = connect(proxy.addr()).await;
    call(&mut client, 1, 0, &[]).await;
    let status = proxy.terminate().await.unwrap();
    assert!(status.success(), "{status:?}");
    assert!(closed_by_peer(&mut client).await);
}
