//! Certificate refresh: new connections present the new certificate, expiring credentials
//! drive the refresh, a failed refresh keeps the old certificate and retries.

use super::*;

#[tokio::test]
async fn connections_opened_after_a_refresh_present_the_new_certificate() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    // Certificates live 6 s and are renewed 3 s before they expire.
    let proxy = spawn(
        args(
            &bed,
            &[
                "--key",
                &key,
                "--cert-lifetime",
                "6",
                "--cert-refresh-margin",
                "3",
                "--cert-retry-ms",
                "500",
            ],
        ),
        &bed.env(&env_credentials(SECRET)),
    )
    .await;
    let mut before = connect(proxy.addr()).await;
    null_call(&mut before, 1).await.expect("first connection");
    proxy
        .wait_for_log("client certificate refreshed", LOG_WAIT)
        .await
        .unwrap();
    let mut after = connect(proxy.addr()).await;
    null_call(&mut after, 2).await.expect("second connection");
    // The connection opened before the refresh is untouched.
    null_call(&mut before, 3)
        .await
        .expect("first connection still open");

    let seen = bed.target.observations();
    assert_eq!(seen.iam_accepted, 2, "{:?}", seen.iam_refusals);
    assert_ne!(seen.client_certs[0], seen.client_certs[1]);
    let v = iam_verifier("s3files");
    let first = v.verify(
        &seen.client_certs[0],
        SystemTime::now() - Duration::from_secs(3),
    );
    let second = v.verify(&seen.client_certs[1], SystemTime::now()).unwrap();
    if let Ok(first) = first {
        assert!(second.signed_at > first.signed_at);
    }
    let log = proxy.log();
    assert!(log.contains("(before certificate expiry)"), "{log}");
}

/// The value of `AWS_CONTAINER_AUTHORIZATION_TOKEN` (an EKS Pod Identity token).
const CONTAINER_AUTH_TOKEN: &str = "eks-pod-identity-authorization-token-9c4e2b";

#[tokio::test]
async fn expiring_container_credentials_drive_the_refresh_and_never_reach_the_log() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    // Every request hands out a new token, valid 8 s; the proxy renews 5 s before expiry.
    let endpoint = CredentialsEndpoint::start(|n| {
        credentials(
            format!("session-token-{n}-{}", "x".repeat(40)),
            Duration::from_secs(8),
        )
    })
    .await
    .unwrap();
    let uri = endpoint.uri();
    let proxy = spawn(
        args(
            &bed,
            &[
                "--key",
                &key,
                "--credentials-refresh-margin",
                "5",
                "--cert-retry-ms",
                "500",
                "--log-level",
                "trace",
            ],
        ),
        // EKS Pod Identity also sends an authorization token, a secret too.
        &bed.env(&[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_AUTH_TOKEN),
        ]),
    )
    .await;
    let mut first = connect(proxy.addr()).await;
    null_call(&mut first, 1).await.expect("first connection");
    proxy
        .wait_for_log("client certificate refreshed", LOG_WAIT)
        .await
        .unwrap();
    let mut second = connect(proxy.addr()).await;
    null_call(&mut second, 2).await.expect("second connection");

    let tokens: Vec<String> = accepted_tokens(&bed).into_iter().flatten().collect();
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert!(tokens[0].starts_with("session-token-0-"), "{tokens:?}");
    assert_ne!(tokens[0], tokens[1]);
    assert!(endpoint.requests() >= 2);

    let log = proxy.log();
    assert!(log.contains("(before credentials expiry)"), "{log}");
    assert!(log.contains("from container credentials"), "{log}");
    assert!(log.contains("TRACE"), "trace logging is on");
    let mut secrets = vec![SECRET, CONTAINER_AUTH_TOKEN];
    secrets.extend(tokens.iter().map(String::as_str));
    assert_no_secrets(&log, &secrets);
    // Not even the token's URL-encoded form, nor its distinctive part.
    assert!(!log.contains(&"x".repeat(40)), "{log}");
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_certificate_and_retries_with_backoff() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    // Request 0 succeeds, 1 and 2 fail, later ones succeed.
    let endpoint = CredentialsEndpoint::start(|n| match n {
        // 403 is not retried inside the provider: one request per refresh attempt.
        1 | 2 => Reply::Fail(403),
        _ => credentials(format!("token-{n}"), HOUR),
    })
    .await
    .unwrap();
    let uri = endpoint.uri();
    let proxy = spawn(
        args(
            &bed,
            &[
                "--key",
                &key,
                "--cert-lifetime",
                "30",
                "--cert-refresh-margin",
                "28",
                "--cert-retry-ms",
                "1000",
            ],
        ),
        &bed.env(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)]),
    )
    .await;
    let log = proxy
        .wait_for_log("client certificate refresh failed (attempt 1)", LOG_WAIT)
        .await
        .unwrap();
    assert!(
        log.contains("keeping the current certificate, valid until"),
        "{log}"
    );
    // While refreshes fail, new connections still bind with the current certificate.
    let mut client = connect(proxy.addr()).await;
    null_call(&mut client, 1)
        .await
        .expect("bind with the kept certificate");
    let log = proxy
        .wait_for_log("client certificate refreshed", Duration::from_secs(30))
        .await
        .unwrap();
    assert!(log.contains("(attempt 2)"), "{log}");
    assert!(log.contains("retrying in 2s"), "backoff doubles: {log}");
    assert!(endpoint.requests() >= 4);
}
