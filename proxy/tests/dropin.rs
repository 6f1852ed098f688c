//! Drop-in mode: `efs-proxy CONFIG --tls` started the way efs-utils' mount helper starts it
//! (argv, a new session, stdout to /dev/null), with the config text efs-utils writes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use efs_proxy_tests::{
    Backend, BindBehaviour, FakeMountTarget, MountTargetConfig, Responder, SERVER_NAME, ServerTls,
    TestPki,
};
use efs_rpc::{CallHeader, Record, RpcMessage, parse_accepted_reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const EFS_SERVER_NAME: &str = "fs-0123456789abcdef0.efs.us-east-1.amazonaws.com";

/// `docs/protocol.md` §8.4, byte for byte: what efs-utils 3.2.0 writes for an S3 Files mount.
const S3FILES_CONFIG: &str = "fips = no\nforeground = yes\nsocket = l:SO_REUSEADDR=yes\nsocket = a:SO_BINDTODEVICE=lo\noutput = /var/log/amazon/efs/fs-0123456789abcdef0.mnt.s3files.20100.efs-proxy.log\npid = /var/run/efs/fs-0123456789abcdef0.mnt.s3files.20100+/stunnel.pid\n[efs]\nclient = yes\naccept = 127.0.0.1:20100\nconnect = use1-az1.fs-0123456789abcdef0.s3files.us-east-1.on.aws:2049\nsslVersion = TLSv1.2\nrenegotiation = no\nTIMEOUTbusy = 20\nTIMEOUTclose = 0\nTIMEOUTidle = 70\ndelay = yes\nverify = 2\nCAfile = /etc/amazon/efs/efs-utils.crt\ncert = /var/run/efs/fs-0123456789abcdef0.mnt.s3files.20100+/certificate.pem\nkey = /etc/amazon/efs/privateKey.pem\ncheckHost = fs-0123456789abcdef0.s3files.us-east-1.on.aws\nretry_nfs_mount_command_timeout_sec = 15\nproxy_logging_level = INFO\nproxy_logging_max_bytes = 1048576\nproxy_logging_file_count = 10\ncloud_watch_metrics = True\ncloud_watch_logs = True\nlog_group_name = /aws/efs/utils\ncloud_watch_logs_retention_days = 14\nfs_id = fs-0123456789abcdef0\nregion = us-east-1\nefs_utils_version = 3.2.0";

/// The EFS variant (`docs/protocol.md` §8.4, "Variations"): no `[proxy]` keys, no `output`.
const EFS_CONFIG: &str = "fips = no\nforeground = yes\nsocket = l:SO_REUSEADDR=yes\nsocket = a:SO_BINDTODEVICE=lo\npid = /var/run/efs/fs-0123456789abcdef0.mnt.20200+/stunnel.pid\n[efs]\nclient = yes\naccept = 127.0.0.1:20200\nconnect = fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:2049\nsslVersion = TLSv1.2\nrenegotiation = no\nTIMEOUTbusy = 20\nTIMEOUTclose = 0\nTIMEOUTidle = 70\ndelay = yes\nverify = 2\nCAfile = /etc/amazon/efs/efs-utils.crt\ncert = /var/run/efs/fs-0123456789abcdef0.mnt.20200+/certificate.pem\nkey = /etc/amazon/efs/privateKey.pem\ncheckHost = fs-0123456789abcdef0.efs.us-east-1.amazonaws.com\n";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_efs-proxy"))
}

struct World {
    dir: tempfile::TempDir,
    pki: TestPki,
    target: FakeMountTarget,
    port: u16,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(&[SERVER_NAME, EFS_SERVER_NAME]).unwrap();
        pki.write(dir.path()).unwrap();
        let target = FakeMountTarget::start(
            "127.0.0.1:0".parse().unwrap(),
            MountTargetConfig {
                tls: Some(ServerTls {
                    chain: vec![pki.server.cert_der.clone()],
                    key: pki.server.private_key(),
                    require_client_cert: true,
                }),
                bind: BindBehaviour::ready(7),
                backend: Backend::Responder(Responder::Echo),
                max_record_size: efs_rpc::DEFAULT_MAX_RECORD_SIZE,
                iam: None,
            },
        )
        .await
        .unwrap();
        let port = free_port();
        World {
            dir,
            pki,
            target,
            port,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// efs-utils' config text with paths and addresses pointed at this test's files.
    fn config(&self, template: &str, accept_port: &str, connect: &str) -> PathBuf {
        let replace = |s: String, key: &str, value: &str| -> String {
            s.lines()
                .map(|line| match line.split_once(" = ") {
                    Some((k, _)) if k == key => format!("{key} = {value}"),
                    _ => line.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let mut text = template.to_string();
        text = text.replace(
            &format!("127.0.0.1:{accept_port}"),
            &format!("127.0.0.1:{}", self.port),
        );
        text = text.replace(connect, &self.target.addr().to_string());
        text = replace(text, "output", self.path("proxy.log").to_str().unwrap());
        text = replace(text, "pid", self.path("stunnel.pid").to_str().unwrap());
        text = replace(text, "CAfile", self.path("ca.pem").to_str().unwrap());
        text = replace(text, "cert", self.path("client.pem").to_str().unwrap());
        text = replace(text, "key", self.path("client.key").to_str().unwrap());
        let path = self.path("efs-proxy.conf");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A port the drop-in proxy can bind a moment later: one nothing holds now, below the
/// kernel's ephemeral range (32768-), where outgoing connections (this test's many others,
/// running in parallel) cannot take it between this pick and the proxy's bind.
fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new();
    for attempt in 0u32..1000 {
        let port = 20000 + (random.hash_one(attempt) % 12000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port in 20000-31999");
}

/// Starts the proxy as efs-utils does: `setsid efs-proxy CONFIG --tls`, stdout to /dev/null,
/// stderr piped. Returns once the port accepts connections (each check is a connect-and-close
/// probe, like the helper's `test_tlsport`).
async fn start(config: &Path, args: &[&str], addr: &str) -> Child {
    let child = Command::new("setsid")
        .arg(bin())
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "drop-in proxy did not listen on {addr}: {:?}",
        child.wait_with_output().await
    );
}

async fn null_and_echo(addr: &str) {
    let mut client = TcpStream::connect(addr).await.unwrap();
    for (xid, body) in [(1u32, &b""[..]), (2, &b"drop-in!"[..])] {
        let procedure = if body.is_empty() { 0 } else { 1 };
        let message = RpcMessage::call(xid, CallHeader::new(100_003, 4, procedure))
            .encode_with_body(body)
            .unwrap();
        client
            .write_all(Record::from_message(&message).unwrap().wire())
            .await
            .unwrap();
        let mut mark = [0u8; 4];
        client.read_exact(&mut mark).await.unwrap();
        let mut reply = vec![0; (u32::from_be_bytes(mark) & 0x7fff_ffff) as usize];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(parse_accepted_reply(&reply).unwrap(), (xid, body));
    }
}

async fn sigterm(child: Child) -> std::process::Output {
    let pid = child.id().unwrap();
    Command::new("kill")
        .arg(pid.to_string())
        .status()
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn the_s3files_config_of_efs_utils_serves_tls_and_keeps_the_process_contract() {
    let world = World::new().await;
    let config = world.config(
        S3FILES_CONFIG,
        "20100",
        "use1-az1.fs-0123456789abcdef0.s3files.us-east-1.on.aws:2049",
    );
    let child = start(&config, &["--tls"], &world.addr()).await;
    let pid = child.id().unwrap();

    null_and_echo(&world.addr()).await;
    let pid_file = std::fs::read_to_string(world.path("stunnel.pid")).unwrap();
    assert_eq!(pid_file, format!("{pid}\n"));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("efs-proxy"),
        "watchdog liveness check"
    );

    let seen = world.target.observations();
    assert_eq!(
        seen.handshakes, 1,
        "the readiness probes opened no server connection"
    );
    assert_eq!(seen.server_names, vec![Some(SERVER_NAME.to_string())]);
    assert_eq!(seen.client_certs, vec![world.pki.client.cert_der.to_vec()]);

    let out = sigterm(child).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !world.path("stunnel.pid").exists(),
        "SIGTERM removes the pid file"
    );
    let log = std::fs::read_to_string(world.path("proxy.log")).unwrap();
    assert!(log.contains("(drop-in) listening on"), "{log}");
    assert!(
        log.contains("bind: READY"),
        "INFO level from proxy_logging_level: {log}"
    );
}

#[tokio::test]
async fn the_efs_config_works_and_logs_nothing_by_default() {
    let world = World::new().await;
    let config = world.config(
        EFS_CONFIG,
        "20200",
        "fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:2049",
    );
    let child = start(&config, &["--tls", "--no-direct-s3-read"], &world.addr()).await;
    null_and_echo(&world.addr()).await;
    assert_eq!(
        world.target.observations().server_names,
        vec![Some(EFS_SERVER_NAME.to_string())]
    );
    let out = sigterm(child).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(!world.path("proxy.log").exists());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_survives_a_broken_one() {
    let world = World::new().await;
    let config = world.config(
        S3FILES_CONFIG,
        "20100",
        "use1-az1.fs-0123456789abcdef0.s3files.us-east-1.on.aws:2049",
    );
    let child = start(&config, &["--tls"], &world.addr()).await;
    let pid = child.id().unwrap().to_string();
    null_and_echo(&world.addr()).await;

    // A new certificate (as the watchdog writes every hour), then SIGHUP.
    let renewed = TestPki::generate(&[SERVER_NAME]).unwrap();
    std::fs::write(world.path("client.pem"), &renewed.client.cert_pem).unwrap();
    std::fs::write(world.path("client.key"), &renewed.client.key_pem).unwrap();
    Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .await
        .unwrap();
    wait_for_log(&world.path("proxy.log"), "SIGHUP: reloaded", 1).await;
    null_and_echo(&world.addr()).await;

    // A broken certificate file: the reload fails, the proxy keeps the previous one.
    std::fs::write(world.path("client.pem"), "# not a certificate\n").unwrap();
    Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .await
        .unwrap();
    wait_for_log(&world.path("proxy.log"), "SIGHUP: reload failed", 1).await;
    null_and_echo(&world.addr()).await;

    // And a later good reload still works (AWS's proxy stops reloading after a failure).
    let third = TestPki::generate(&[SERVER_NAME]).unwrap();
    let with_comments = format!("# efs-utils comment\n{}", third.client.cert_pem);
    std::fs::write(world.path("client.pem"), with_comments).unwrap();
    std::fs::write(world.path("client.key"), &third.client.key_pem).unwrap();
    Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .await
        .unwrap();
    wait_for_log(&world.path("proxy.log"), "SIGHUP: reloaded", 2).await;
    null_and_echo(&world.addr()).await;

    let certs = world.target.observations().client_certs;
    let expected = [
        world.pki.client.cert_der.to_vec(),
        renewed.client.cert_der.to_vec(),
        renewed.client.cert_der.to_vec(),
        third.client.cert_der.to_vec(),
    ];
    assert_eq!(certs, expected);
    let out = sigterm(child).await;
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("reload failed"),
        "errors also reach stderr: {stderr}"
    );
}

async fn wait_for_log(path: &Path, needle: &str, count: usize) {
    for _ in 0..400 {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.matches(needle).count() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{needle:?} x{count} not in {}",
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

#[tokio::test]
async fn plaintext_mode_forwards_without_tls() {
    let world = World::new().await;
    let plain = FakeMountTarget::start(
        "127.0.0.1:0".parse().unwrap(),
        MountTargetConfig {
            tls: None,
            bind: BindBehaviour::ProgUnavail,
            backend: Backend::Responder(Responder::Echo),
            max_record_size: efs_rpc::DEFAULT_MAX_RECORD_SIZE,
            iam: None,
        },
    )
    .await
    .unwrap();
    let text = format!(
        "fips = no\npid = {}\n[efs]\naccept = {}\nconnect = {}\n",
        world.path("p.pid").display(),
        world.addr(),
        plain.addr()
    );
    std::fs::write(world.path("plain.conf"), text).unwrap();
    let child = start(&world.path("plain.conf"), &[], &world.addr()).await;
    null_and_echo(&world.addr()).await;
    assert_eq!(
        plain.observations().binds.len(),
        1,
        "bind tried, refused, then plain"
    );
    assert_eq!(sigterm(child).await.status.code(), Some(0));
}

#[tokio::test]
async fn malformed_configs_give_one_clear_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let base = "fips = no\npid = /tmp/x.pid\n[efs]\naccept = 127.0.0.1:20049\nconnect = h:2049\n";
    let cases = [
        (
            base.replace("connect = h:2049\n", ""),
            "missing required key `connect` in [efs]",
        ),
        (
            format!("{base}connect = h2:2049\n"),
            "key `connect` is given more than once",
        ),
        (
            base.replace("fips = no", "fips = perhaps"),
            "`fips = perhaps`: expected yes/no",
        ),
        (
            base.replace(":20049", ":70000"),
            "`accept = 127.0.0.1:70000`",
        ),
        (
            base.replace("fips = no", "fips = yes"),
            if cfg!(feature = "fips") {
                "--tls needs `cert` in [efs]"
            } else {
                "fips = yes asks for FIPS 140-3 validated cryptography, which this build does not \
                 have (rustls with ring): build with `cargo build --release -p efs-proxy \
                 --features fips`"
            },
        ),
        (base.to_string(), "--tls needs `cert` in [efs]"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.conf"));
        std::fs::write(&path, text).unwrap();
        let out = Command::new(bin())
            .arg(&path)
            .arg("--tls")
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{expected}: {stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr:?}"
        );
        assert!(
            stderr.contains(path.to_str().unwrap()),
            "names the file: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(!stderr.contains("panicked"));
    }
    let out = Command::new(bin())
        .arg("/nonexistent/efs.conf")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/efs.conf: cannot read"));
}

/// The S3 Files config of efs-utils with `key = value` lines rewritten (`None` drops the key).
fn edited_config(world: &World, edits: &[(&str, Option<&str>)]) -> PathBuf {
    let path = world.config(
        S3FILES_CONFIG,
        "20100",
        "use1-az1.fs-0123456789abcdef0.s3files.us-east-1.on.aws:2049",
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let lines = text.lines().filter_map(|line| {
        let key = line.split_once(" = ").map(|(k, _)| k);
        match edits.iter().find(|(k, _)| Some(*k) == key) {
            Some((k, Some(v))) => Some(format!("{k} = {v}")),
            Some((_, None)) => None,
            None => Some(line.to_string()),
        }
    });
    std::fs::write(&path, lines.collect::<Vec<_>>().join("\n")).unwrap();
    path
}

/// efs-proxy sends SNI only with `checkHost`; without it the handshake carries no name.
#[tokio::test]
async fn without_check_host_no_sni_is_sent() {
    let world = World::new().await;
    // A host name: an IP address is never sent as SNI anyway.
    let connect = format!("localhost:{}", world.target.addr().port());
    let config = edited_config(&world, &[("checkHost", None), ("connect", Some(&connect))]);
    let child = start(&config, &["--tls"], &world.addr()).await;
    null_and_echo(&world.addr()).await;
    assert_eq!(world.target.observations().server_names, vec![None]);
    assert_eq!(sigterm(child).await.status.code(), Some(0));
}

/// Accepts TCP, waits `delay`, then relays to `to`: a slow path to the mount target.
async fn slow_relay(to: std::net::SocketAddr, delay: Duration) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut outbound) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}

/// `retry_nfs_mount_command_timeout_sec = 3`: TCP, TLS and bind share one 2 s deadline, as in
/// efs-proxy. A handshake that takes 1.5 s leaves 0.5 s for the bind, so a silent bind ends
/// the client connection after about 2 s, not 1.5 s + a fresh 2 s.
#[tokio::test]
async fn drop_in_gives_tcp_tls_and_bind_one_deadline() {
    let world = World::new().await;
    let silent = FakeMountTarget::start(
        "127.0.0.1:0".parse().unwrap(),
        MountTargetConfig {
            tls: Some(ServerTls {
                chain: vec![world.pki.server.cert_der.clone()],
                key: world.pki.server.private_key(),
                require_client_cert: true,
            }),
            bind: BindBehaviour::Silent,
            backend: Backend::Responder(Responder::Echo),
            max_record_size: efs_rpc::DEFAULT_MAX_RECORD_SIZE,
            iam: None,
        },
    )
    .await
    .unwrap();
    let relay = slow_relay(silent.addr(), Duration::from_millis(1500)).await;
    let config = edited_config(
        &world,
        &[
            ("connect", Some(&relay.to_string())),
            ("retry_nfs_mount_command_timeout_sec", Some("3")),
        ],
    );
    let child = start(&config, &["--tls"], &world.addr()).await;
    let mut client = TcpStream::connect(world.addr()).await.unwrap();
    let message = RpcMessage::call(1, CallHeader::new(100_003, 4, 0))
        .encode()
        .unwrap();
    let started = std::time::Instant::now();
    client
        .write_all(Record::from_message(&message).unwrap().wire())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf)).await;
    let elapsed = started.elapsed();
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "closed, not answered: {read:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_millis(2900),
        "one 2 s deadline for TCP + TLS + bind, took {elapsed:?}"
    );
    wait_for_log(&world.path("proxy.log"), "layer=bind", 1).await;
    assert_eq!(sigterm(child).await.status.code(), Some(0));
}

/// A symbolic link planted at the pid path (root writes it in a shared directory) is neither
/// followed nor removed: the file it points to is untouched, and stderr says why.
#[tokio::test]
async fn a_symbolic_link_at_the_pid_path_is_not_followed() {
    let world = World::new().await;
    let victim = world.path("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, world.path("stunnel.pid")).unwrap();
    let config = edited_config(&world, &[]);
    let child = start(&config, &["--tls"], &world.addr()).await;
    null_and_echo(&world.addr()).await;
    let out = sigterm(child).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(
        world.path("stunnel.pid").is_symlink(),
        "the link is left alone"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to write") && stderr.contains("is a symbolic link"),
        "{stderr}"
    );
}

/// `fips = yes` (efs-utils writes it with `fips_mode_enabled` or `AWS_USE_FIPS_ENDPOINT`) is
/// served by a `--features fips` build: TLS on aws-lc-rs in FIPS mode, against the test mount
/// target (ring, which offers FIPS suites and groups too).
#[cfg(feature = "fips")]
#[tokio::test]
async fn a_fips_build_serves_fips_yes() {
    let world = World::new().await;
    let config = edited_config(&world, &[("fips", Some("yes"))]);
    let child = start(&config, &["--tls"], &world.addr()).await;
    null_and_echo(&world.addr()).await;
    assert_eq!(sigterm(child).await.status.code(), Some(0));
    let log = std::fs::read_to_string(world.path("proxy.log")).unwrap();
    assert!(
        log.contains("FIPS build: TLS on aws-lc-rs in FIPS mode"),
        "{log}"
    );
    assert!(log.contains("bind: READY"), "{log}");
}
