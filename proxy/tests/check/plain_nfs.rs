//! Failure 1, plain NFS without the proxy: a plain NFS server, and one refusing the plaintext
//! call ("access denied"), fail the tls step as plain NFS without TLS.

use super::*;

#[tokio::test]
async fn plain_nfs_server_is_named_with_the_access_denied_explanation() {
    let world = plaintext_bed(Responder::Echo).await;
    let out = check_with_plain_cert(&world).await;
    out.assert_failed(
        "tls",
        &[
            "plain NFS without TLS: ",
            "closed the connection at the TLS ClientHello",
            "answered a plaintext NFS NULL call",
            "not an EFS/S3 Files mount target",
            "mount -t nfs4",
            "\"access denied\"",
            "efs-proxy run",
        ],
    );
    assert!(out.stdout.contains("check failed: plain NFS without TLS"));
}

/// A server that takes NFS without TLS only to refuse it (MSG_DENIED, AUTH_ERROR): what a
/// direct `mount -t nfs4` meets as "access denied".
async fn access_denying_nfs_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut mark = [0u8; 4];
                stream.read_exact(&mut mark).await.ok()?;
                if mark[0] == 0x16 {
                    return None; // a TLS ClientHello: hang up
                }
                let mut message = vec![0; (u32::from_be_bytes(mark) & 0x7fff_ffff) as usize];
                stream.read_exact(&mut message).await.ok()?;
                let (call, _) = RpcMessage::decode(&message).ok()?;
                let reply = RpcMessage::reply(call.xid, ReplyHeader::AuthError(AuthStat::TOOWEAK))
                    .encode()
                    .ok()?;
                let record = efs_rpc::Record::from_message(&reply).ok()?;
                stream.write_all(record.wire()).await.ok()
            });
        }
    });
    addr
}

#[tokio::test]
async fn plain_nfs_refusal_is_reported_as_access_denied() {
    let world = iam_bed().await;
    let addr = access_denying_nfs_server().await.to_string();
    let out = check(&cert_args(&world, &addr), &env(&world, false)).await;
    out.assert_failed(
        "tls",
        &[
            "plain NFS without TLS: ",
            "refused a plaintext NFS NULL call (authentication error",
            "\"access denied\" is what NFS without TLS and IAM gets",
            "mount -t nfs4",
        ],
    );
}
