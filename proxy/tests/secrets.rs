//! Secrets and what reaches the logs: key files other users can read are named with the fix,
//! and text from the server is escaped before it is logged.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use efs_proxy_tests::client::send_call;
use efs_proxy_tests::process::ProxyProcess;
use efs_proxy_tests::{Backend, BindBehaviour, Responder, TestBed};
use efs_rpc::awsfile::{BindClientResponse, BindResponse};
use tokio::net::TcpStream;

const LOG_WAIT: Duration = Duration::from_secs(10);

fn bin() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_efs-proxy"))
}

async fn bed(bind: BindBehaviour) -> TestBed {
    TestBed::start(bind, Backend::Responder(Responder::Echo)).await
}

#[tokio::test]
async fn a_key_file_other_users_can_read_is_named_with_the_fix() {
    let bed = bed(BindBehaviour::ready(1)).await;

    let quiet = ProxyProcess::spawn(bin(), bed.proxy_args(&[]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!quiet.log().contains("private key"), "{}", quiet.log());

    std::fs::set_permissions(
        &bed.files.client_key,
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let proxy = ProxyProcess::spawn(bin(), bed.proxy_args(&[]))
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
    let message = "refused\nERROR forged log line\u{1b}[2J";
    let bind = BindBehaviour::Reply(BindClientResponse {
        bind_response: BindResponse::Error(message.into()),
        scale_up_config: Default::default(),
    });
    let bed = bed(bind).await;
    let proxy = ProxyProcess::spawn(bin(), bed.proxy_args(&[]))
        .await
        .unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    send_call(&mut client, 1, 0, &[]).await.unwrap();
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
