//! Failure 4, an unreachable target (NLB): a name that does not resolve, a refused
//! connection, a silent address.

use super::*;

#[tokio::test]
async fn an_unresolvable_name_is_unreachable_at_dns() {
    let world = iam_bed().await;
    // A label over 63 characters: the resolver refuses it without sending a query.
    let name = format!("{}.invalid:2049", "n".repeat(70));
    let out = check(
        &with(iam_args(&world, &[]), "--target", &name),
        &env(&world, true),
    )
    .await;
    out.assert_failed(
        "dns",
        &[
            "unreachable: cannot resolve nnnn",
            "NlbDns",
            "resolves only inside its VPC",
        ],
    );
}

#[tokio::test]
async fn a_refused_connection_is_unreachable_at_tcp() {
    let world = iam_bed().await;
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let out = check(
        &with(iam_args(&world, &[]), "--target", &addr.to_string()),
        &env(&world, true),
    )
    .await;
    out.assert_failed(
        "tcp",
        &[
            &format!("unreachable: {addr} refused the connection: nothing listens on port"),
            "check --target's host and port",
        ],
    );
    assert!(out.line("dns").starts_with("✓ "));
}

#[tokio::test]
async fn a_silent_address_is_unreachable_with_the_security_group_fix() {
    let world = iam_bed().await;
    // A listener with a full accept queue drops further SYNs, as a security group does.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    for _ in 0..4 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => queued.push(s),
            Err(_) => break,
        }
    }
    let args = with(
        with(iam_args(&world, &[]), "--target", &addr.to_string()),
        "--connect-timeout",
        "1",
    );
    let out = check(&args, &env(&world, true)).await;
    out.assert_failed(
        "tcp",
        &[
            &format!("unreachable: {addr} did not answer within 1s"),
            "security group must allow TCP 2049",
            "allowedCidr",
        ],
    );
    drop(queued);
}
