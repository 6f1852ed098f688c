//! Credentials traded at STS or the SSO portal: web identity, assume-role, SSO.
//!
//! The fake STS / SSO portal (`StsSsoEndpoint`) hands out the verifier's identity (`AKID`,
//! `SECRET`) with a session token of the test's own, so a certificate the target accepts was
//! signed with exactly what the portal returned. Nothing here may reach real AWS: every proxy
//! gets the fake's address in `AWS_ENDPOINT_URL_STS` / `_SSO` and in the global
//! `AWS_ENDPOINT_URL` (see `sts_sso_env`), profile-based sources also in the profile's
//! `endpoint_url`, and each test asserts that the fake saw the call it expected (the proxy
//! cannot have the secret from anywhere else). All of the `iam` tests pass in a network namespace
//! with nothing but loopback (`unshare -n`).

use super::*;

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/efs-mount";
/// A web identity token (a JWT in real life; its content is not checked by STS's caller).
const WEB_IDENTITY_JWT: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDplZnMifQ.c2lnbmF0dXJlLW5vdC1jaGVja2Vk";
/// The keys of the source profile of an assume-role profile.
const SOURCE_AKID: &str = "AKIDSOURCEPROFILE";
const SOURCE_SECRET: &str = "source/profile+secret/KEYEXAMPLEKEYEXAMPLE";
/// The source profile's session token: its keys are temporary too (as after an MFA
/// `GetSessionToken`), so `AssumeRole` carries it in `x-amz-security-token`.
const SOURCE_TOKEN: &str = "source-profile-session/token+e1a5d7";

fn issued(session_token: &str) -> Issued {
    Issued {
        access_key_id: AKID.into(),
        secret_access_key: SECRET.into(),
        session_token: session_token.into(),
        expires_in: Duration::from_secs(3600),
    }
}

/// The endpoint overrides for the inner STS and SSO clients. aws-config builds those clients
/// from `ProviderConfig::client_config()`, whose `EnvServiceConfig` reads
/// `AWS_ENDPOINT_URL_<SERVICE>` and then `AWS_ENDPOINT_URL` from the environment, and a
/// profile's `services` section and `endpoint_url` only if the profile was already parsed:
/// true for assume-role and SSO (built from the profile), false for the environment's web
/// identity provider, built before any profile is read (aws-config 1.13.0
/// `web_identity_token.rs:244`, `provider_config.rs:226`; found in a network namespace
/// without any route). So the environment variables are what every source honours; both
/// are set, the global one as a backstop.
fn sts_sso_env(url: &str) -> [(&'static str, String); 3] {
    [
        ("AWS_ENDPOINT_URL_STS", url.to_string()),
        ("AWS_ENDPOINT_URL_SSO", url.to_string()),
        ("AWS_ENDPOINT_URL", url.to_string()),
    ]
}

/// `TestBed::env` with owned extras.
fn env_of<'a>(bed: &'a TestBed, extra: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    bed.env(&extra)
}

/// Starts the proxy at trace level with `extra` arguments and environment, and checks that
/// a NULL call gets through (certificate accepted, bind done); panics with `what` and the
/// proxy's log otherwise.
async fn bound_at_trace(
    bed: &TestBed,
    extra_args: &[&str],
    extra_env: &[(&'static str, String)],
    what: &str,
) -> ProxyProcess {
    let at_trace = args(bed, extra_args).with("--log-level", "trace");
    bound(at_trace, &env_of(bed, extra_env), what).await
}

/// The session token in the certificate the target accepted last.
fn last_session_token(bed: &TestBed) -> Option<String> {
    accepted_tokens(bed).pop().expect("a client certificate")
}

/// EKS IRSA: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` → STS `AssumeRoleWithWebIdentity`
/// (unsigned, the token in the form), and the role's credentials sign the certificate.
#[tokio::test]
async fn web_identity_credentials_from_sts_sign_certificates_and_never_reach_the_log() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    let token = "web-identity-session/token+from=STS-3f9a1c";
    let sts = StsSsoEndpoint::start(issued(token), &[]).await.unwrap();
    let token_file = bed.dir().join("web-identity-token");
    std::fs::write(&token_file, WEB_IDENTITY_JWT).unwrap();
    let mut extra = vec![
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            token_file.to_str().unwrap().to_string(),
        ),
        ("AWS_ROLE_ARN", ROLE_ARN.to_string()),
        ("AWS_ROLE_SESSION_NAME", "efs-proxy-irsa".to_string()),
    ];
    extra.extend(sts_sso_env(&sts.url()));
    let proxy = bound_at_trace(&bed, &["--key", &key], &extra, "web identity").await;

    assert_eq!(
        sts.calls(),
        vec![Call::AssumeRoleWithWebIdentity {
            role_arn: ROLE_ARN.into(),
            role_session_name: "efs-proxy-irsa".into(),
            web_identity_token: WEB_IDENTITY_JWT.into(),
            authorization: None,
        }]
    );
    assert_eq!(last_session_token(&bed).as_deref(), Some(token));
    let log = proxy.log();
    assert!(
        log.contains("access key AKIDEXAMPLE from web identity credentials"),
        "{log}"
    );
    assert!(log.contains("TRACE"), "trace logging is on");
    assert_no_secrets(&log, &[SECRET, token, "3f9a1c", WEB_IDENTITY_JWT]);
    drop(proxy);

    // Without its token file, web identity is configured but fails: the error names it and
    // STS is not called.
    std::fs::remove_file(&token_file).unwrap();
    let stderr = start_failure(args(&bed, &["--key", &key]), &env_of(&bed, &extra)).await;
    assert!(
        stderr.contains("AWS credentials from web identity failed"),
        "{stderr}"
    );
    // aws-config's error does not name the file, only the OS error.
    assert!(stderr.contains("No such file or directory"), "{stderr}");
    assert_eq!(sts.calls().len(), 1, "{:?}", sts.calls());
}

/// A profile with `role_arn` + `source_profile` (`--profile`): STS `AssumeRole`, SigV4-signed
/// with the source profile's keys (the fake STS recomputes the signature), and the assumed
/// role's credentials sign the certificate. A source profile with a wrong secret is refused
/// by STS, and the proxy's error names the profile and STS's reason.
#[tokio::test]
async fn assume_role_profiles_call_sts_signed_with_the_source_profile() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    let token = "assumed-role-session/token+from=STS-7be2d0";
    let sts = StsSsoEndpoint::start(issued(token), &[(SOURCE_AKID, SOURCE_SECRET)])
        .await
        .unwrap();
    let aws = bed.dir().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[src]\naws_access_key_id = {SOURCE_AKID}\naws_secret_access_key = {SOURCE_SECRET}\n\
             aws_session_token = {SOURCE_TOKEN}\n\
             [wrong-src]\naws_access_key_id = {SOURCE_AKID}\naws_secret_access_key = not-the-secret\n"
        ),
    )
    .unwrap();
    // The profile's own endpoint_url is honoured for assume-role too: a third override.
    std::fs::write(
        aws.join("config"),
        format!(
            "[profile mount]\nrole_arn = {ROLE_ARN}\nsource_profile = src\n\
             role_session_name = efs-proxy-assume\nendpoint_url = {url}\n\
             [profile wrong]\nrole_arn = {ROLE_ARN}\nsource_profile = wrong-src\n\
             endpoint_url = {url}\n",
            url = sts.url()
        ),
    )
    .unwrap();
    let extra = sts_sso_env(&sts.url());
    let env = env_of(&bed, &extra);
    let proxy = bound_at_trace(
        &bed,
        &["--key", &key, "--profile", "mount"],
        &extra,
        "assume-role",
    )
    .await;

    assert_eq!(
        sts.calls(),
        vec![Call::AssumeRole {
            role_arn: ROLE_ARN.into(),
            role_session_name: "efs-proxy-assume".into(),
            signed_by: SignedBy {
                access_key_id: SOURCE_AKID.into(),
                region: REGION.into(),
                service: "sts".into(),
                session_token: Some(SOURCE_TOKEN.into()),
            },
        }]
    );
    assert_eq!(last_session_token(&bed).as_deref(), Some(token));
    let log = proxy.log();
    assert!(
        log.contains("access key AKIDEXAMPLE from profile credentials"),
        "{log}"
    );
    assert!(log.contains("TRACE"), "trace logging is on");
    assert_no_secrets(
        &log,
        &[
            SECRET,
            SOURCE_SECRET,
            SOURCE_TOKEN,
            "e1a5d7",
            token,
            "7be2d0",
        ],
    );
    drop(proxy);

    let stderr = start_failure(args(&bed, &["--key", &key, "--profile", "wrong"]), &env).await;
    assert!(
        stderr.contains("profile \"wrong\" did not provide credentials"),
        "{stderr}"
    );
    assert!(stderr.contains("SignatureDoesNotMatch"), "{stderr}");
    assert_no_secrets(&stderr, &["not-the-secret", SOURCE_SECRET]);
    let calls = sts.calls();
    assert!(
        matches!(
            calls.last(),
            Some(Call::Refused { status: 403, reason, .. })
                if reason.starts_with("SigV4 signature mismatch for AKIDSOURCEPROFILE")
        ),
        "{calls:?}"
    );
}

/// IAM Identity Center: a profile with `sso_session` (token cache named after the session)
/// and a legacy one with `sso_start_url` (cache named after the URL), picked with
/// `AWS_PROFILE`. The cached access token goes to the portal's `GetRoleCredentials` as
/// `x-amz-sso_bearer_token`, and the role credentials sign the certificate.
#[tokio::test]
async fn sso_profiles_get_role_credentials_with_the_cached_token() {
    let bed = iam_bed().await;
    let key = bed.rsa_key();
    let token = "sso-role-session/token+from=portal-51c0de";
    let portal = StsSsoEndpoint::start(issued(token), &[]).await.unwrap();
    let aws = bed.dir().join(".aws");
    let cache = aws.join("sso/cache");
    std::fs::create_dir_all(&cache).unwrap();
    let start_url = "https://d-1234567890.awsapps.com/start";
    let legacy_url = "https://d-0987654321.awsapps.com/start";
    // Each profile's endpoint_url is honoured for SSO too: a third override.
    std::fs::write(
        aws.join("config"),
        format!(
            "[profile sso-session]\nsso_session = corp\nsso_account_id = 123456789012\n\
             sso_role_name = EfsMount\nendpoint_url = {url}\n\
             [sso-session corp]\nsso_start_url = {start_url}\nsso_region = eu-west-1\n\
             sso_registration_scopes = sso:account:access\n\
             [profile sso-legacy]\nsso_start_url = {legacy_url}\nsso_region = eu-west-1\n\
             sso_account_id = 210987654321\nsso_role_name = EfsReader\nendpoint_url = {url}\n",
            url = portal.url()
        ),
    )
    .unwrap();
    // Valid for an hour: more than aws-config's 5-minute refresh window, so no SSO OIDC call.
    let expires_at = efs_proxy::iam::SigningTime::from_system_time(
        SystemTime::now() + Duration::from_secs(3600),
    )
    .rfc3339();
    let cached = |bearer: &str, url: &str| {
        serde_json::json!({
            "accessToken": bearer,
            "expiresAt": expires_at,
            "region": "eu-west-1",
            "startUrl": url,
        })
        .to_string()
    };
    let (bearer_session, bearer_legacy) = ("sso-bearer-session-a1b2c3", "sso-bearer-legacy-d4e5f6");
    std::fs::write(
        cache.join(sso_cache_file_name("corp")),
        cached(bearer_session, start_url),
    )
    .unwrap();
    std::fs::write(
        cache.join(sso_cache_file_name(legacy_url)),
        cached(bearer_legacy, legacy_url),
    )
    .unwrap();

    for profile in ["sso-session", "sso-legacy"] {
        let mut extra = vec![("AWS_PROFILE", profile.to_string())];
        extra.extend(sts_sso_env(&portal.url()));
        let proxy = bound_at_trace(&bed, &["--key", &key], &extra, profile).await;
        assert_eq!(last_session_token(&bed).as_deref(), Some(token));
        let log = proxy.log();
        assert!(
            log.contains("access key AKIDEXAMPLE from profile credentials"),
            "{log}"
        );
        assert!(log.contains("TRACE"), "trace logging is on");
        assert_no_secrets(
            &log,
            &[SECRET, token, "51c0de", bearer_session, bearer_legacy],
        );
    }
    assert_eq!(
        portal.calls(),
        vec![
            Call::GetRoleCredentials {
                role_name: "EfsMount".into(),
                account_id: "123456789012".into(),
                bearer_token: bearer_session.into(),
            },
            Call::GetRoleCredentials {
                role_name: "EfsReader".into(),
                account_id: "210987654321".into(),
                bearer_token: bearer_legacy.into(),
            },
        ]
    );
}
