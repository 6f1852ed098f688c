//! What a local user can make the listener hold: idle connections are closed at the first
//! record deadline or to make room, the accept loop survives the open-file limit, and the
//! listener stays on loopback unless told otherwise.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use efs_proxy::{ProxyBuilder, StartError};
use efs_proxy_tests::load::RpcConnection;
use efs_proxy_tests::process::{ProxyProcess, binary, run_to_exit};
use efs_proxy_tests::{Backend, BindBehaviour, Responder, TestBed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

const LOG_WAIT: Duration = Duration::from_secs(10);

fn bin() -> std::path::PathBuf {
    binary(std::path::Path::new(env!("CARGO_BIN_EXE_efs-proxy")))
}

async fn setup() -> TestBed {
    TestBed::start(BindBehaviour::ready(1), Backend::Responder(Responder::Echo)).await
}

/// True if the peer closes `stream` within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// An rpc-ping round trip (tests/src/bin/rpc-ping.rs): connect, one echoed call; its time.
async fn ping(addr: SocketAddr) -> Result<Duration, String> {
    let started = Instant::now();
    let call = async {
        let mut conn = RpcConnection::connect(addr).await?;
        conn.call(1, b"ping").await
    };
    match tokio::time::timeout(Duration::from_secs(8), call).await {
        Ok(Ok(reply)) if reply == b"ping" => Ok(started.elapsed()),
        other => Err(format!("{other:?}")),
    }
}

/// The proof of the issue: fd limit 64, 1000 idle connections, and a client still served
/// each time: within a second on a quiet machine. The bound asserted is 5 s, half the
/// first-record deadline (10 s) that a client kept out would wait for: the ping connects
/// behind up to a thousand others in the kernel's backlog, which the accept loop drains one
/// eviction at a time, and on a loaded 2-core machine that took 3 s.
#[tokio::test]
async fn a_thousand_idle_connections_under_a_64_fd_limit_do_not_keep_a_client_out() {
    let setup = setup().await;
    let mut command = Command::new("prlimit");
    command
        .arg("--nofile=64:64")
        .arg("--")
        .arg(bin())
        .args(setup.proxy_args(&[]))
        .env_remove("RUST_LOG");
    let proxy = ProxyProcess::spawn_command(command).await.unwrap();
    let log = proxy
        .wait_for_log("lowered to fit the open-file limit of 64", LOG_WAIT)
        .await
        .unwrap();
    assert!(log.contains("at most 24 client connections"), "{log}");

    let mut idle = Vec::new();
    for _ in 0..1000 {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(proxy.addr())).await
        {
            idle.push(stream);
        }
    }
    assert!(idle.len() >= 900, "only {} connections made", idle.len());
    for round in 0..5 {
        let took = ping(proxy.addr())
            .await
            .unwrap_or_else(|e| panic!("round {round}: no reply: {e}\n{}", proxy.log()));
        eprintln!("round {round}: served in {took:?}");
        assert!(took < Duration::from_secs(5), "round {round}: {took:?}");
    }
    assert_eq!(
        setup.target.observations().connections,
        5,
        "idle connections opened no server connection"
    );
    drop(idle);
}

#[tokio::test]
async fn an_idle_or_partial_connection_is_closed_at_the_first_record_deadline() {
    let setup = setup().await;
    let proxy = ProxyProcess::spawn(&bin(), setup.proxy_args(&["--first-record-timeout", "1"]))
        .await
        .unwrap();
    let mut silent = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut partial = TcpStream::connect(proxy.addr()).await.unwrap();
    partial.write_all(&[0x80, 0, 0, 40, 1, 2]).await.unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    assert!(closed_within(&mut partial, Duration::from_secs(5)).await);
    assert!(started.elapsed() >= Duration::from_millis(800));
    proxy
        .wait_for_log("no complete RPC record within 1s", LOG_WAIT)
        .await
        .unwrap();
    assert_eq!(setup.target.observations().connections, 0);
    ping(proxy.addr()).await.unwrap();
}

#[tokio::test]
async fn at_the_cap_the_oldest_waiting_connection_makes_room_and_else_the_new_one_is_closed() {
    let setup = setup().await;
    let proxy = ProxyProcess::spawn(&bin(), setup.proxy_args(&["--max-connections", "2"]))
        .await
        .unwrap();
    let mut oldest = TcpStream::connect(proxy.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _newer = TcpStream::connect(proxy.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut first = RpcConnection::connect(proxy.addr()).await.unwrap();
    assert_eq!(first.call(1, b"one").await.unwrap(), b"one");
    assert!(closed_within(&mut oldest, Duration::from_secs(2)).await);

    let mut second = RpcConnection::connect(proxy.addr()).await.unwrap();
    assert_eq!(second.call(1, b"two").await.unwrap(), b"two");
    // Both slots are sessions now: a third connection is closed at once.
    let mut third = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(closed_within(&mut third, Duration::from_secs(2)).await);
    proxy
        .wait_for_log("closing the new connection from 127.0.0.1", LOG_WAIT)
        .await
        .unwrap();
    assert_eq!(first.call(1, b"still").await.unwrap(), b"still");
}

#[tokio::test]
async fn listening_beyond_loopback_needs_allow_remote() {
    let setup = setup().await;
    let mut refused = setup.proxy_args(&[]);
    refused[2] = "0.0.0.0:0".into(); // --listen
    let (code, _, stderr) = run_to_exit(&bin(), refused.clone()).await.unwrap();
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0"),
        "{stderr}"
    );
    assert!(stderr.contains("--allow-remote"), "{stderr}");
    assert_eq!(stderr.matches("refusing").count(), 1, "{stderr}");

    refused.push("--allow-remote".into());
    let allowed = ProxyProcess::spawn(&bin(), refused).await.unwrap();
    allowed.terminate().await.unwrap();

    let refused = ProxyBuilder::new("127.0.0.1:9")
        .listen("0.0.0.0:0".parse().unwrap())
        .start()
        .await;
    let Err(err) = refused else {
        panic!("ProxyBuilder::listen(0.0.0.0:0) without allow_remote started")
    };
    assert!(matches!(err, StartError::RemoteListen { .. }), "{err}");
    let proxy = ProxyBuilder::new("127.0.0.1:9")
        .listen("[::]:0".parse().unwrap())
        .allow_remote(true)
        .start()
        .await
        .unwrap();
    proxy.shutdown().await;
}

/// A resolver that never answers: the proxy runs in its own mount namespace whose
/// /etc/resolv.conf names a loopback nameserver that reads queries and never replies (glibc
/// would wait 30 s). The lookup is bounded by --connect-timeout, and the log names the layer.
#[tokio::test]
async fn a_dns_lookup_that_never_answers_is_bounded_by_the_connect_timeout() {
    let setup = setup().await;
    let nameserver = match tokio::net::UdpSocket::bind("127.0.0.77:53").await {
        Ok(socket) => socket,
        Err(e) => panic!("cannot bind the silent nameserver 127.0.0.77:53 (needs root): {e}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.77\noptions timeout:30 attempts:1\n",
    )
    .unwrap();
    let mut proxy_args = setup.proxy_args(&["--connect-timeout", "1"]);
    proxy_args[4] = "fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:2049".into(); // --target
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "sh", "-c"])
        .arg(r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#)
        .arg(&resolv)
        .arg(bin())
        .args(proxy_args)
        .env_remove("RUST_LOG");
    let proxy = ProxyProcess::spawn_command(command).await.unwrap();

    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    let call = efs_rpc::RpcMessage::call(1, efs_rpc::CallHeader::new(100_003, 4, 0))
        .encode()
        .unwrap();
    let started = Instant::now();
    client
        .write_all(efs_rpc::Record::from_message(&call).unwrap().wire())
        .await
        .unwrap();
    let mut query = [0u8; 512];
    let asked = tokio::time::timeout(Duration::from_secs(5), nameserver.recv(&mut query)).await;
    assert!(
        matches!(asked, Ok(Ok(n)) if n > 12),
        "the query reached the silent nameserver"
    );
    assert!(closed_within(&mut client, Duration::from_secs(5)).await);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let log = proxy
        .wait_for_log("took longer than 1s", LOG_WAIT)
        .await
        .unwrap();
    assert!(log.contains("layer=dns"), "{log}");
}

/// Runs one NFS NULL call as uid/gid 65534 (setpriv, bash's /dev/tcp) and returns the number
/// of reply bytes it read before the proxy closed the connection (0: refused).
async fn call_as_nobody(addr: SocketAddr) -> usize {
    let call = efs_rpc::RpcMessage::call(7, efs_rpc::CallHeader::new(100_003, 4, 0))
        .encode()
        .unwrap();
    let record = efs_rpc::Record::from_message(&call).unwrap();
    let escaped: String = record
        .wire()
        .iter()
        .map(|b| format!("\\x{b:02x}"))
        .collect();
    let script = format!(
        "exec 3<>/dev/tcp/{}/{} && printf '{escaped}' >&3 && timeout 5 head -c 28 <&3 | wc -c",
        addr.ip(),
        addr.port()
    );
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "bash",
            "-c",
        ])
        .arg(script)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.trim().parse().unwrap_or_else(|_| {
        panic!(
            "setpriv client: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// By default only root (the kernel NFS client) and the proxy's own user are served: another
/// local user's connection is refused with one line; `--allow-uid` widens it.
#[tokio::test]
async fn a_connection_from_another_local_user_is_refused_and_roots_is_served() {
    let setup = setup().await;
    let proxy = ProxyProcess::spawn(&bin(), setup.proxy_args(&[]))
        .await
        .unwrap();
    assert_eq!(call_as_nobody(proxy.addr()).await, 0, "uid 65534 refused");
    let log = proxy
        .wait_for_log("belongs to uid 65534", LOG_WAIT)
        .await
        .unwrap();
    assert_eq!(log.matches("refused:").count(), 1, "one line: {log}");
    assert!(log.contains("--allow-uid"), "{log}");
    ping(proxy.addr()).await.expect("root is served");
    assert_eq!(setup.target.observations().connections, 1);

    let widened = ProxyProcess::spawn(&bin(), setup.proxy_args(&["--allow-uid", "65534"]))
        .await
        .unwrap();
    assert_eq!(
        call_as_nobody(widened.addr()).await,
        28,
        "a whole NULL reply"
    );
}
