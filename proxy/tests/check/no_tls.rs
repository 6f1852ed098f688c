//! Failure 2, no TLS: a peer that answers something else, or nothing, to the TLS ClientHello.

use super::*;

#[tokio::test]
async fn a_peer_that_is_not_tls_is_named_with_what_it_sent() {
    let world = iam_bed().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 512];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
            let _ = stream.shutdown().await;
        }
    });
    let out = check(&cert_args(&world, &addr), &env(&world, false)).await;
    out.assert_failed(
        "tls",
        &[
            "no TLS: ",
            "is not a TLS endpoint: it answered the TLS ClientHello with \"HTTP/1.1 400 Bad Request\\r\\n",
            "not a TLS record",
            "the NLB's TCP listener on 2049",
        ],
    );
    assert!(!out.line("tls").contains("plain NFS"));
    assert!(out.stdout.contains("check failed: no TLS"));
}

#[tokio::test]
async fn a_plaintext_target_that_answers_nothing_is_no_tls() {
    // The fake target without TLS, whose backend never answers: neither TLS nor NFS.
    let world = plaintext_bed(Responder::Silent).await;
    let out = check_with_plain_cert(&world).await;
    out.assert_failed(
        "tls",
        &[
            "no TLS: ",
            "closed the connection at the TLS ClientHello",
            "does not answer a plaintext NFS call either",
        ],
    );
}
