//! Every numeric option of `efs-proxy run` over its whole range, and past it: the proxy either
//! refuses the value with one clear line naming the option (exit status 2), or starts, serves
//! a client connection (here: a mount target that refuses TCP) and never panics.

use std::path::Path;
use std::time::Duration;

use efs_proxy_tests::process::{ProxyProcess, run_to_exit};
use efs_proxy_tests::{SERVER_NAME, TestPki};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

struct Files {
    _dir: tempfile::TempDir,
    ca: String,
    cert: String,
    key: String,
}

fn files() -> &'static Files {
    static FILES: std::sync::OnceLock<Files> = std::sync::OnceLock::new();
    FILES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let written = TestPki::generate(&[SERVER_NAME])
            .unwrap()
            .write(dir.path())
            .unwrap();
        let s = |p: &Path| p.to_str().unwrap().to_string();
        Files {
            ca: s(&written.ca),
            cert: s(&written.client_cert),
            key: s(&written.client_key),
            _dir: dir,
        }
    })
}

fn base_args(iam: bool) -> Vec<String> {
    let f = files();
    let mut args: Vec<String> = ["run", "--listen", "127.0.0.1:0", "--ca-file", &f.ca]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // Port 1 on loopback: nothing listens, every connection is refused at once.
    if iam {
        let key = ["--key", &f.key, "--fs-id", "fs-0123456789abcdef0"];
        let rest = ["--region", "us-east-1", "--service", "efs", "--no-iam"];
        args.extend(key.iter().chain(&rest).map(|s| s.to_string()));
        args.extend(["--target".into(), "127.0.0.1:1".into()]);
    } else {
        let rest = [
            "--cert",
            &f.cert,
            "--key",
            &f.key,
            "--target",
            "127.0.0.1:1",
        ];
        args.extend(rest.iter().map(|s| s.to_string()));
        args.extend(["--server-name".into(), SERVER_NAME.into()]);
    }
    args
}

/// Runs the proxy with `option value`: a refusal must be one line naming the option; a start
/// must survive a client connection.
async fn check(iam: bool, option: &str, value: &str) -> Result<(), String> {
    let mut args = base_args(iam);
    args.extend([option.to_string(), value.to_string()]);
    match ProxyProcess::spawn(bin(), &args).await {
        Ok(proxy) => {
            let mut client = tokio::net::TcpStream::connect(proxy.addr())
                .await
                .map_err(|e| e.to_string())?;
            let call = efs_rpc::RpcMessage::call(1, efs_rpc::CallHeader::new(100_003, 4, 0))
                .encode()
                .unwrap();
            let record = efs_rpc::Record::from_message(&call).unwrap();
            client.write_all(record.wire()).await.ok();
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
