//! Drop-in mode: `efs-proxy CONFIG --tls` started the way efs-utils' mount helper starts it
//! (argv, a new session, stdout to /dev/null), with the config text efs-utils writes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use efs_proxy_tests::bed::{EFS_SERVER_NAME, plaintext_target};
use efs_proxy_tests::client::{call, send_call};
use efs_proxy_tests::{BindBehaviour, SERVER_NAME, TestBed, TestPki};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// `docs/protocol.md` §8.4, byte for byte: what efs-utils 3.2.0 writes for an S3 Files mount.
const S3FILES_CONFIG: &str = include_str!("vectors/dropin/s3files.conf");

/// The EFS variant (`docs/protocol.md` §8.4, "Variations"): no `[proxy]` keys, no `output`.
const EFS_CONFIG: &str = include_str!("vectors/dropin/efs.conf");

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_efs-proxy"))
}

/// The bed of every drop-in test: its target answers bind READY (partition `07…`), and its
/// server certificate carries both the S3 Files and the EFS name of the file system.
async fn drop_in_bed() -> TestBed {
    TestBed::builder()
        .bind(BindBehaviour::ready(7))
        .server_names(&[SERVER_NAME, EFS_SERVER_NAME])
        .start()
        .await
}

/// efs-utils' config text pointed at the bed (`accept` at [`TestBed::listen_addr`],
/// `connect` at its target, the PKI's files, the log and pid file in its directory), then
/// `key = value` lines rewritten by `edits` (`None` drops the key); written to a file.
fn efs_utils_config(bed: &TestBed, template: &str, edits: &[(&str, Option<&str>)]) -> PathBuf {
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let pointed = [
        ("accept", bed.listen_addr()),
        ("connect", bed.target.addr().to_string()),
        ("output", path(&bed.path("proxy.log"))),
        ("pid", path(&bed.path("stunnel.pid"))),
        ("CAfile", path(&bed.files.ca)),
        ("cert", path(&bed.files.client_cert)),
        ("key", path(&bed.files.client_key)),
    ];
    let lines = template.lines().filter_map(|line| {
        let Some((key, _)) = line.split_once(" = ") else {
            return Some(line.to_string());
        };
        if let Some((_, edit)) = edits.iter().find(|(k, _)| *k == key) {
            return edit.map(|value| format!("{key} = {value}"));
        }
        match pointed.iter().find(|(k, _)| *k == key) {
            Some((_, value)) => Some(format!("{key} = {value}")),
            None => Some(line.to_string()),
        }
    });
    let file = bed.path("efs-proxy.conf");
    std::fs::write(&file, lines.collect::<Vec<_>>().join("\n")).unwrap();
    file
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
    assert!(call(&mut client, 1, 0, &[]).await.is_empty());
    assert_eq!(call(&mut client, 2, 1, b"drop-in!").await, b"drop-in!");
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
    let bed = drop_in_bed().await;
    let config = efs_utils_config(&bed, S3FILES_CONFIG, &[]);
    let child = start(&config, &["--tls"], &bed.listen_addr()).await;
    let pid = child.id().unwrap();

    null_and_echo(&bed.listen_addr()).await;
    let pid_file = std::fs::read_to_string(bed.path("stunnel.pid")).unwrap();
    assert_eq!(pid_file, format!("{pid}\n"));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("efs-proxy"),
        "watchdog liveness check"
    );

    let seen = bed.target.observations();
    assert_eq!(
        seen.handshakes, 1,
        "the readiness probes opened no server connection"
    );
    assert_eq!(seen.server_names, vec![Some(SERVER_NAME.to_string())]);
    assert_eq!(seen.client_certs, vec![bed.pki.client.cert_der.to_vec()]);

    let out = sigterm(child).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !bed.path("stunnel.pid").exists(),
        "SIGTERM removes the pid file"
    );
    let log = std::fs::read_to_string(bed.path("proxy.log")).unwrap();
    assert!(log.contains("(drop-in) listening on"), "{log}");
    assert!(
        log.contains("bind: READY"),
        "INFO level from proxy_logging_level: {log}"
    );
}

#[tokio::test]
async fn the_efs_config_works_and_logs_nothing_by_default() {
    let bed = drop_in_bed().await;
    let config = efs_utils_config(&bed, EFS_CONFIG, &[]);
    let child = start(
        &config,
        &["--tls", "--no-direct-s3-read"],
        &bed.listen_addr(),
    )
    .await;
    null_and_echo(&bed.listen_addr()).await;
    assert_eq!(
        bed.target.observations().server_names,
        vec![Some(EFS_SERVER_NAME.to_string())]
    );
    let out = sigterm(child).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(!bed.path("proxy.log").exists());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_survives_a_broken_one() {
    let bed = drop_in_bed().await;
    let config = efs_utils_config(&bed, S3FILES_CONFIG, &[]);
    let child = start(&config, &["--tls"], &bed.listen_addr()).await;
    let pid = child.id().unwrap().to_string();
    null_and_echo(&bed.listen_addr()).await;

    // A new certificate (as the watchdog writes every hour), then SIGHUP.
    let renewed = TestPki::generate(&[SERVER_NAME]).unwrap();
    std::fs::write(&bed.files.client_cert, &renewed.client.cert_pem).unwrap();
    std::fs::write(&bed.files.client_key, &renewed.client.key_pem).unwrap();
    reload(&bed, &pid, "SIGHUP: reloaded", 1).await;

    // A broken certificate file: the reload fails, the proxy keeps the previous one.
    std::fs::write(&bed.files.client_cert, "# not a certificate\n").unwrap();
    reload(&bed, &pid, "SIGHUP: reload failed", 1).await;

    // And a later good reload still works (AWS's proxy stops reloading after a failure).
    let third = TestPki::generate(&[SERVER_NAME]).unwrap();
    let with_comments = format!("# efs-utils comment\n{}", third.client.cert_pem);
    std::fs::write(&bed.files.client_cert, with_comments).unwrap();
    std::fs::write(&bed.files.client_key, &third.client.key_pem).unwrap();
    reload(&bed, &pid, "SIGHUP: reloaded", 2).await;

    let certs = bed.target.observations().client_certs;
    let expected = [
        bed.pki.client.cert_der.to_vec(),
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

/// Sends SIGHUP to `pid`, waits for the `count`th `needle` in the log, and checks that the
/// proxy still serves.
async fn reload(bed: &TestBed, pid: &str, needle: &str, count: usize) {
    Command::new("kill")
        .args(["-HUP", pid])
        .status()
        .await
        .unwrap();
    wait_for_log(&bed.path("proxy.log"), needle, count).await;
    null_and_echo(&bed.listen_addr()).await;
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
    let bed = drop_in_bed().await;
    let plain = plaintext_target(BindBehaviour::ProgUnavail).await;
    let text = format!(
        "fips = no\npid = {}\n[efs]\naccept = {}\nconnect = {}\n",
        bed.path("p.pid").display(),
        bed.listen_addr(),
        plain.addr()
    );
    std::fs::write(bed.path("plain.conf"), text).unwrap();
    let child = start(&bed.path("plain.conf"), &[], &bed.listen_addr()).await;
    null_and_echo(&bed.listen_addr()).await;
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

/// efs-proxy sends SNI only with `checkHost`; without it the handshake carries no name.
#[tokio::test]
async fn without_check_host_no_sni_is_sent() {
    let bed = drop_in_bed().await;
    // A host name: an IP address is never sent as SNI anyway.
    let connect = format!("localhost:{}", bed.target.addr().port());
    let config = efs_utils_config(
        &bed,
        S3FILES_CONFIG,
        &[("checkHost", None), ("connect", Some(&connect))],
    );
    let child = start(&config, &["--tls"], &bed.listen_addr()).await;
    null_and_echo(&bed.listen_addr()).await;
    assert_eq!(bed.target.observations().server_names, vec![None]);
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
    let bed = drop_in_bed().await;
    let silent = bed.another_target(BindBehaviour::Silent).await;
    let relay = slow_relay(silent.addr(), Duration::from_millis(1500)).await;
    let config = efs_utils_config(
        &bed,
        S3FILES_CONFIG,
        &[
            ("connect", Some(&relay.to_string())),
            ("retry_nfs_mount_command_timeout_sec", Some("3")),
        ],
    );
    let child = start(&config, &["--tls"], &bed.listen_addr()).await;
    let mut client = TcpStream::connect(bed.listen_addr()).await.unwrap();
    let started = std::time::Instant::now();
    send_call(&mut client, 1, 0, &[]).await.unwrap();
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
    wait_for_log(&bed.path("proxy.log"), "layer=bind", 1).await;
    assert_eq!(sigterm(child).await.status.code(), Some(0));
}

/// A symbolic link planted at the pid path (root writes it in a shared directory) is neither
/// followed nor removed: the file it points to is untouched, and stderr says why.
#[tokio::test]
async fn a_symbolic_link_at_the_pid_path_is_not_followed() {
    let bed = drop_in_bed().await;
    let victim = bed.path("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, bed.path("stunnel.pid")).unwrap();
    let config = efs_utils_config(&bed, S3FILES_CONFIG, &[]);
    let child = start(&config, &["--tls"], &bed.listen_addr()).await;
    null_and_echo(&bed.listen_addr()).await;
    let out = sigterm(child).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(
        bed.path("stunnel.pid").is_symlink(),
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
    let bed = drop_in_bed().await;
    let config = efs_utils_config(&bed, S3FILES_CONFIG, &[("fips", Some("yes"))]);
    let child = start(&config, &["--tls"], &bed.listen_addr()).await;
    null_and_echo(&bed.listen_addr()).await;
    assert_eq!(sigterm(child).await.status.code(), Some(0));
    let log = std::fs::read_to_string(bed.path("proxy.log")).unwrap();
    assert!(
        log.contains("FIPS build: TLS on aws-lc-rs in FIPS mode"),
        "{log}"
    );
    assert!(log.contains("bind: READY"), "{log}");
}
