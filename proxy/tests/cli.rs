//! The command line's contract with scripts: `--help` names every option, and a command line
//! the proxy refuses gets one message naming what is wrong, with exit status 2 (a usage error)
//! or 1 (a combination it cannot serve). (Also makes `cargo test` build the `efs-proxy` binary
//! that the workspace's integration tests run.)

use std::process::Command;

/// `efs-proxy ARGS` with nothing of the machine's AWS settings (a cleared environment but
/// `PATH`, instance metadata off): exit status, stdout, stderr.
fn efs_proxy(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_efs-proxy"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run efs-proxy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Options each subcommand's `--help` must name.
const HELP: [(&str, &[&str]); 3] = [
    (
        "run",
        &[
            "--target",
            "--server-name",
            "--listen",
            "--ca-file",
            "--cert",
            "--key",
            "--no-verify",
            "--log-level",
        ],
    ),
    (
        "run",
        &[
            "--fs-id",
            "--region",
            "--service",
            "--access-point",
            "--profile",
            "--az-id",
            "--key",
            "--no-iam",
        ],
    ),
    (
        "cert",
        &[
            "--fs-id",
            "--region",
            "--service",
            "--key",
            "--time",
            "--access-point",
            "--common-name",
            "--client-source",
            "--client-version",
            "--out",
            "--explain",
        ],
    ),
];

#[test]
fn help_documents_every_option() {
    for (subcommand, options) in HELP {
        let (code, stdout, _) = efs_proxy(&[subcommand, "--help"]);
        assert_eq!(code, 0, "{subcommand} --help");
        for option in options {
            assert!(
                stdout.contains(option),
                "{option} missing from {subcommand} --help:\n{stdout}"
            );
        }
    }
}

/// Command lines the proxy refuses: the arguments, the exit status, and what stderr names.
#[rustfmt::skip] // one case a line
const REFUSED: [(&[&str], i32, &[&str]); 7] = [
    // Only a global option: no subcommand, no drop-in CONFIG (this reached `unreachable!`).
    (&["--log-level", "info"], 2, &["a subcommand (run, cert, check"]),
    (&["run", "--target", "127.0.0.1:2049"], 2, &["--server-name"]),
    // --cert needs --key; --key alone needs --cert (or --fs-id).
    (&["run", "--target", "127.0.0.1:2049", "--server-name", "x", "--cert", "c.pem"], 2, &["--key"]),
    (&["run", "--target", "127.0.0.1:2049", "--server-name", "x", "--key", "k.pem"], 1, &["--key needs --cert"]),
    // --fs-id needs --region and --service; an S3 Files address needs the AZ (or --target).
    (&["run", "--fs-id", FS], 2, &["--region", "--service"]),
    (&["run", "--fs-id", FS, "--region", "us-east-1", "--service", "s3files"], 1, &["--az-id"]),
    // A bad file system id is named with an example of a good one.
    (&["run", "--fs-id", "fs-NOPE", "--region", "us-east-1", "--service", "efs"], 1, &["fs-NOPE", FS]),
];

const FS: &str = "fs-0123456789abcdef0";

#[test]
fn refused_command_lines_name_what_is_wrong() {
    for (args, expected_code, names) in REFUSED {
        let (code, _, stderr) = efs_proxy(args);
        assert_eq!(code, expected_code, "{args:?}: {stderr}");
        for name in names {
            assert!(
                stderr.contains(name),
                "{name:?} missing for {args:?}:\n{stderr}"
            );
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// `generate-assets` (the packaging step) writes a man page per visible subcommand and the
/// bash, zsh and fish completions, each about `efs-proxy` and its subcommands.
#[test]
fn generate_assets_writes_man_pages_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("assets");
    let (code, stdout, stderr) = efs_proxy(&["generate-assets", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "stderr: {stderr}");
    for sub in ["run", "cert", "check", "mount", "umount", "mounts"] {
        let page = out.join(format!("man/efs-proxy-{sub}.1"));
        let text = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{page:?}: {e}"));
        assert!(text.contains(".TH "), "{page:?}: {text}");
        assert!(
            text.contains(&format!("efs\\-proxy\\-{sub}")),
            "{page:?}: {text}"
        );
    }
    let main = std::fs::read_to_string(out.join("man/efs-proxy.1")).unwrap();
    assert!(main.contains(".TH efs-proxy 1"), "{main}");
    assert!(
        !out.join("man/efs-proxy-mount-proxy.1").exists(),
        "a hidden subcommand got a man page"
    );
    for file in ["efs-proxy.bash", "_efs-proxy", "efs-proxy.fish"] {
        let text = std::fs::read_to_string(out.join("completions").join(file)).unwrap();
        assert!(
            text.contains("efs-proxy") && text.contains("install-mount-helper"),
            "{file}: {text}"
        );
        assert!(stdout.contains(file), "not listed: {file}\n{stdout}");
    }
}

/// An `--out` that cannot be a directory gets one error naming it, not a panic.
#[test]
fn generate_assets_names_an_unusable_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = file.join("assets");
    let (code, _, stderr) = efs_proxy(&["generate-assets", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 1, "stderr: {stderr}");
    assert!(
        stderr.starts_with("error: cannot create ") && stderr.contains("a-file"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
