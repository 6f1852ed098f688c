//! The library API: a proxy embedded with `ProxyBuilder`, its live statistics and its
//! graceful shutdown.

use std::time::Duration;

use efs_proxy::{Auth, ProxyBuilder, Trust};
use efs_proxy_tests::load::RpcConnection;
use efs_proxy_tests::{BindBehaviour, SERVER_NAME, TestBed};

#[tokio::test]
async fn an_embedded_proxy_serves_counts_and_shuts_down() {
    let bed = TestBed::builder()
        .bind(BindBehaviour::ready(3))
        .start()
        .await;
    let (target, files) = (&bed.target, &bed.files);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bound = listener.local_addr().unwrap();
    let proxy = ProxyBuilder::new(target.addr().to_string())
        .server_name(SERVER_NAME)
        .listener(listener)
        .trust(Trust::CaFile(files.ca.clone()))
        .auth(Auth::CertificateFiles {
            cert: files.client_cert.clone(),
            key: files.client_key.clone(),
        })
        .drain_timeout(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    assert_eq!(proxy.local_addr(), bound, "the given listener is used");

    let mut client = RpcConnection::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(client.call(1, b"library").await.unwrap(), b"library");
    assert_eq!(client.call(1, b"again!!!").await.unwrap(), b"again!!!");

    let stats = proxy.stats();
    assert_eq!(stats.connections_accepted, 1);
    assert_eq!(stats.connections_active, 1);
    assert_eq!(stats.binds, 1);
    assert_eq!(stats.records_to_server, 2);
    assert_eq!(stats.records_to_client, 2);
    assert!(
        stats.bytes_to_server > 2 * 40 && stats.bytes_to_client > 2 * 24,
        "{stats:?}"
    );
    let expiry = proxy
        .certificate_expiry()
        .expect("the certificate's notAfter");
    assert!(expiry > std::time::SystemTime::now());

    proxy.shutdown().await;
    assert!(
        client.call(1, b"late").await.is_err(),
        "shutdown closes open connections"
    );
    assert!(
        tokio::net::TcpStream::connect(bound).await.is_err(),
        "and stops listening"
    );
}

#[tokio::test]
async fn a_bad_certificate_file_fails_start_with_the_path() {
    let err = ProxyBuilder::new("127.0.0.1:9")
        .listen("127.0.0.1:0".parse().unwrap())
        .auth(Auth::CertificateFiles {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        })
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
}
