//! Every numeric option of `efs-proxy run` over its whole range, and past it: the proxy either
//! refuses the value with one clear line naming the option (exit status 2), or starts, serves
//! a client connection (here: a mount target that refuses TCP) and never panics.

use std::path::Path;
use std::time::Duration;

use efs_proxy_tests::client::send_call;
use efs_proxy_tests::process::{ProxyProcess, run_to_exit};
use efs_proxy_tests::{ProxyArgs, TestBed};
use proptest::prelude::*;
use tokio::io::AsyncReadExt;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_efs-proxy"))
}

/// Numeric options of `run` in certificate-file mode, and of the IAM certificate (`--no-iam`
/// mode, so no credentials are needed).
const FILE_OPTIONS: [&str; 7] = [
    "--max-record-size",
    "--server-timeout",
    "--keepalive",
    "--max-connections",
    "--first-record-timeout",
    "--connect-timeout",
    "--bind-timeout",
];
const IAM_OPTIONS: [&str; 5] = [
    "--cert-lifetime",
    "--cert-refresh-margin",
    "--credentials-refresh-margin",
    "--cert-retry-ms",
    "--credentials-timeout",
];

/// Values at and past every edge of a u64, and anything in between.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("1".to_string()),
        Just(u32::MAX.to_string()),
        Just((u64::MAX / 1000).to_string()),
        Just(i64::MAX.to_string()),
        Just(u64::MAX.to_string()),
        Just("18446744073709551616".to_string()),
        Just("-1".to_string()),
        Just("1e3".to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        (0u64..100_000).prop_map(|n| n.to_string()),
    ]
}

/// `run` against the bed's PKI, to a mount target that refuses TCP (port 1 on loopback:
/// nothing listens, every connection is refused at once): with the client certificate, or
/// (`iam`) with an IAM certificate in `--no-iam` mode, so no credentials are needed.
fn base_args(bed: &TestBed, iam: bool) -> ProxyArgs {
    let args = if iam {
        let key = bed.files.client_key.to_str().unwrap();
        bed.run_with_iam()
            .with("--service", "efs")
            .with("--key", key)
            .and(&["--no-iam"])
    } else {
        bed.run_with_cert()
    };
    args.with("--target", "127.0.0.1:1")
}

/// Runs the proxy with `option value`: a refusal must be one line naming the option; a start
/// must survive a client connection.
async fn check(iam: bool, option: &str, value: &str) -> Result<(), String> {
    let bed = TestBed::builder().start().await;
    let args = base_args(&bed, iam).with(option, value);
    match ProxyProcess::spawn(bin(), &args).await {
        Ok(proxy) => {
            let mut client = tokio::net::TcpStream::connect(proxy.addr())
                .await
                .map_err(|e| e.to_string())?;
            send_call(&mut client, 1, 0, &[]).await.ok();
            let mut buf = [0u8; 64];
            let _ = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf)).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let log = proxy.log();
            if log.contains("panicked") {
                return Err(format!("{option} {value}: panic: {log}"));
            }
            proxy.terminate().await.map_err(|e| e.to_string())?;
            Ok(())
        }
        Err(_) => {
            let (code, _, stderr) = run_to_exit(bin(), &args).await.map_err(|e| e.to_string())?;
            let clear = stderr.contains(option.trim_start_matches('-'))
                && !stderr.contains("panicked")
                && matches!(code, Some(1 | 2));
            if clear {
                Ok(())
            } else {
                Err(format!("{option} {value}: exit {code:?}, stderr: {stderr}"))
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_numeric_run_option_is_refused_clearly_or_works(
        index in 0..FILE_OPTIONS.len() + IAM_OPTIONS.len(),
        value in value(),
    ) {
        let (iam, option) = match FILE_OPTIONS.get(index) {
            Some(option) => (false, *option),
            None => (true, IAM_OPTIONS[index - FILE_OPTIONS.len()]),
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let outcome = runtime.block_on(check(iam, option, &value));
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}

/// Every option at every edge value, once (the property test above samples them).
#[tokio::test]
async fn every_numeric_run_option_at_every_edge() {
    let edges = [
        "0",
        "1",
        "4294967295",
        "18446744073709551615",
        "18446744073709551616",
        "-1",
    ];
    let mut failures = Vec::new();
    for (iam, options) in [(false, &FILE_OPTIONS[..]), (true, &IAM_OPTIONS[..])] {
        for option in options {
            for value in edges {
                if let Err(e) = check(iam, option, value).await {
                    failures.push(e);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
