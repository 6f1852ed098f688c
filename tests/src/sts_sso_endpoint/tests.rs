//! Unit tests of the fake endpoint: form decoding, refusal of bad requests, SSO cache names.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::encoding::parse_form;
use super::*;

#[test]
fn forms_decode_and_bad_encodings_are_errors() {
    let form =
        parse_form("Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr&A=b+c").unwrap();
    assert_eq!(form["RoleArn"], "arn:aws:iam::1:role/r");
    assert_eq!(form["A"], "b c");
    assert!(parse_form("a=%zz").is_err());
    assert!(parse_form("a=%4").is_err());
    assert!(parse_form("a=%ff").is_err(), "not UTF-8");
}

/// Sends raw bytes, returns the status code of the answer (0 if none).
async fn status_of(endpoint: &StsSsoEndpoint, raw: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(endpoint.addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    stream.shutdown().await.ok();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Malformed or unexpected requests get a 4xx, are recorded as refused, and the server
/// keeps serving.
#[tokio::test]
async fn bad_requests_get_4xx_and_the_server_keeps_serving() {
    let issued = Issued {
        access_key_id: "AKID".into(),
        secret_access_key: "secret".into(),
        session_token: "token".into(),
        expires_in: Duration::from_secs(60),
    };
    let endpoint = StsSsoEndpoint::start(issued, &[("AKIDSRC", "src")])
        .await
        .unwrap();
    let form = |body: &str| {
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"garbage\r\n\r\n".to_vec(), 400),
        (b"GET /nope HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"POST / HTTP/1.1\r\nNoColon\r\n\r\n".to_vec(), 400),
        (
            b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort".to_vec(),
            400,
        ),
        (form("Action=AssumeRole").into_bytes(), 400),
        (
            form("Action=AssumeRole&Version=2011-06-15&RoleArn=%zz").into_bytes(),
            400,
        ),
        (
            form("Action=GetCallerIdentity&Version=2011-06-15&RoleArn=a&RoleSessionName=s")
                .into_bytes(),
            400,
        ),
        // Unsigned AssumeRole: refused as real STS would.
        (
            form("Action=AssumeRole&Version=2011-06-15&RoleArn=a&RoleSessionName=s").into_bytes(),
            403,
        ),
        (
            b"GET /federation/credentials?role_name=r&account_id=1 HTTP/1.1\r\n\r\n".to_vec(),
            401,
        ),
        (
            b"GET /federation/credentials?role_name=r HTTP/1.1\r\n\
              x-amz-sso_bearer_token: t\r\n\r\n"
                .to_vec(),
            400,
        ),
    ];
    for (raw, expected) in &cases {
        let got = status_of(&endpoint, raw).await;
        assert_eq!(got, *expected, "{}", String::from_utf8_lossy(raw));
    }
    let calls = endpoint.calls();
    assert_eq!(calls.len(), cases.len(), "{calls:?}");
    assert!(
        calls.iter().all(|c| matches!(c, Call::Refused { .. })),
        "{calls:?}"
    );

    // Still serving, and a good request is answered with the credentials.
    let web = form(
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr\
         &RoleSessionName=s&WebIdentityToken=jwt",
    );
    assert_eq!(status_of(&endpoint, web.as_bytes()).await, 200);
    assert_eq!(
        endpoint.calls().last(),
        Some(&Call::AssumeRoleWithWebIdentity {
            role_arn: "arn:aws:iam::1:role/r".into(),
            role_session_name: "s".into(),
            web_identity_token: "jwt".into(),
            authorization: None,
        })
    );
}

#[test]
fn the_sso_cache_name_is_the_sha1_of_the_identifier() {
    // aws-config's own vectors (sso/cache.rs, `determine_correct_cache_filenames`).
    assert_eq!(
        sso_cache_file_name("dev-scopes"),
        "75e4d41276d8bd17f85986fc6cccef29fd725ce3.json"
    );
    assert_eq!(
        sso_cache_file_name("https://d-92671207e4.awsapps.com/start"),
        "13f9d35043871d073ab260e020f0ffde092cb14b.json"
    );
}
