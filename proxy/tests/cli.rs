//! The command line's contract with scripts. (Also makes `cargo test` build the `efs-proxy`
//! binary that the workspace's integration tests run.)

use std::process::Command;

fn efs_proxy(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_efs-proxy"))
        .args(args)
        .output()
        .expect("run efs-proxy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn run_help_documents_every_option() {
    let (code, stdout, _) = efs_proxy(&["run", "--help"]);
    assert_eq!(code, 0);
    for option in [
        "--target",
        "--server-name",
        "--listen",
        "--ca-file",
        "--cert",
        "--key",
        "--no-verify",
        "--log-level",
    ] {
        assert!(stdout.contains(option), "{option} missing from:\n{stdout}");
    }
}

#[test]
fn missing_required_options_are_named() {
    let (code, _, stderr) = efs_proxy(&["run", "--target", "127.0.0.1:2049"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--server-name"), "{stderr}");
}

#[test]
fn cert_without_key_is_refused() {
    let (code, _, stderr) = efs_proxy(&[
        "run",
        "--target",
        "127.0.0.1:2049",
        "--server-name",
        "x",
        "--cert",
        "c.pem",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--key"), "{stderr}");
}

#[test]
fn global_options_alone_get_a_usage_error() {
    // Only a global option: no subcommand, no drop-in CONFIG (this reached `unreachable!`).
    let (code, _, stderr) = efs_proxy(&["--log-level", "info"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("a subcommand (run, cert, check"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
