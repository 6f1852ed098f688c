//! Secrets and what reaches the logs: key files other users can read are named with the fix,
//! and text from the server is escaped before it is logged.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use efs_proxy_tests::process::ProxyProcess;
use efs_proxy_tests::{
    Backend, BindBehaviour, FakeMountTarget, MountTargetConfig, PkiFiles, Responder, SERVER_NAME,
    ServerTls, TestPki,
};
use efs_rpc::awsfile::{BindClientResponse, BindResponse};
use efs_rpc::{CallHeader, Record, RpcMessage};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const LOG_WAIT: Duration = Duration::from_secs(10);

fn bin() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_efs-proxy"))
}

async fn target(pki: &TestPki, bind: BindBehaviour) -> FakeMountTarget {
    let config = MountTargetConfig {
        tls: Some(ServerTls {
            chain: vec![pki.server.cert_der.clone()],
            key: pki.server.private_key(),
            require_client_cert: true,
        }),
        bind,
        backend: Backend::Responder(Responder::Echo),
        max_record_size: efs_rpc::DEFAULT_MAX_RECORD_SIZE,
        iam: None,
    };
    FakeMountTarget::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

fn args(target: &FakeMountTarget, files: &PkiFiles) -> Vec<String> {
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    vec![
        "run".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--target".into(),
        target.addr().to_string(),
        "--server-name".into(),
        SERVER_NAME.into(),
        "--ca-file".into(),
        path(&files.ca),
        "--cert".into(),
        path(&files.client_cert),
        "--key".into(),
        path(&files.client_key),
    ]
}

#[tokio::test]
async fn a_key_file_other_users_can_read_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(&[SERVER_NAME]).unwrap();
    let files = pki.write(dir.path()).unwrap();
    let target = target(&pki, BindBehaviour::ready(1)).await;

    let quiet = ProxyProcess::spawn(bin(), args(&target, &files))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!quiet.log().contains("private key"), "{}", quiet.log());

    std::fs::set_permissions(&files.client_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let proxy = ProxyProcess::spawn(bin(), args(&target, &files))
        .await
        .unwrap();
    let log = proxy.wait_for_log("chmod 600", LOG_WAIT).await.unwrap();
    assert!(
        log.contains("WARN"),
        "a warning, the proxy still starts: {log}"
    );
    assert!(log.contains("mode 0644"), "{log}");
}

#[tokio::test]
async fn a_bind_error_message_is_logged_on_one_line_with_its_control_characters_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(&[SERVER_NAME]).unwrap();
    let files = pki.write(dir.path()).unwrap();
    let message = "refused\nERROR forged log line\u{1b}[2J";
    let bind = BindBehaviour::Reply(BindClientResponse {
        bind_response: BindResponse::Error(message.into()),
        scale_up_config: Default::default(),
    });
    let target = target(&pki, bind).await;
    let proxy = ProxyProcess::spawn(bin(), args(&target, &files))
        .await
        .unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    let call = RpcMessage::call(1, CallHeader::new(100_003, 4, 0))
        .encode()
        .unwrap();
    client
        .write_all(Record::from_message(&call).unwrap().wire())
        .await
        .unwrap();
    let log = proxy
        .wait_for_log("answered bind with ERROR", LOG_WAIT)
        .await
        .unwrap();
    assert!(
        log.contains(r"ERROR: refused\nERROR forged log line\u{1b}[2J"),
        "{log}"
    );
    assert!(!log.lines().any(|l| l.starts_with("ERROR forged")), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
}
