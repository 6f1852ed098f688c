//! The `efs-proxy` command. Each subcommand lives in its own module under `cli/`.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// A pure-Rust TLS + IAM proxy for Amazon EFS and Amazon S3 Files.
///
/// NFS clients mount through it: `mount -t nfs4 -o nfsvers=4.2,port=20049 127.0.0.1:/ /mnt`.
///
/// Drop-in mode for efs-utils: `efs-proxy CONFIG [--tls] [--no-direct-s3-read]` reads the
/// config file the mount helper writes (logging, pid file and signals as AWS's efs-proxy).
#[derive(Parser)]
#[command(
    name = "efs-proxy",
    version,
    propagate_version = true,
    args_conflicts_with_subcommands = true,
    arg_required_else_help = true
)]
struct Cli {
    /// Log level (error, warn, info, debug, trace) or a tracing filter; RUST_LOG wins if set.
    /// Drop-in mode takes its level from the config file instead.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    /// Drop-in mode: the efs-utils config file (stunnel-style INI with an [efs] section).
    #[arg(value_name = "CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Drop-in mode: TLS to the mount target with the config's cert, key, CAfile, checkHost.
    #[arg(long, requires = "config")]
    tls: bool,
    /// Drop-in mode: accepted for compatibility; this proxy never reads from S3 directly.
    #[arg(long, requires = "config")]
    no_direct_s3_read: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

// Parsed once at start; boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Listen for NFS clients and forward them to the mount target over TLS.
    #[command(allow_negative_numbers = true)]
    Run(cli::run::RunArgs),
    /// Make an IAM client certificate (as efs-utils would) and write it to a file.
    #[command(allow_negative_numbers = true)]
    Cert(cli::cert::CertArgs),
    /// Diagnose the way to a mount target step by step (DNS, TCP, TLS, client certificate,
    /// bind, NFS NULL) with the same options as run; exit 0 only if every step passes.
    #[command(allow_negative_numbers = true)]
    Check(cli::check::CheckArgs),
    /// Mount S3 Files or EFS: start a proxy for the mount (detached, supervised, gone after
    /// umount) and run the NFS mount through it. Also runs as mount.s3files / mount.efs.
    Mount(cli::mount::MountArgs),
    /// Unmount a mount made by `efs-proxy mount` and stop its proxy at once.
    Umount(cli::mount_admin::UmountArgs),
    /// List the mounts made by `efs-proxy mount`: proxy, port, partition, certificate, counters.
    Mounts(cli::mount_admin::MountsArgs),
    /// Install this binary as mount(8)'s helper for -t s3files (and -t efs with --as).
    InstallMountHelper(cli::mount_admin::InstallArgs),
    /// Write the man pages and shell completions (a packaging step).
    #[command(hide = true)]
    GenerateAssets(cli::assets::AssetsArgs),
    #[command(hide = true)]
    MountSupervisor(DaemonArgs),
    #[command(hide = true)]
    MountProxy(DaemonArgs),
}

/// The hidden daemons of a mount (see cli/mount_daemon.rs).
#[derive(clap::Args)]
struct DaemonArgs {
    dir: std::path::PathBuf,
    #[arg(long)]
    parent: Option<u32>,
}

fn main() -> ExitCode {
    if let Some(code) = cli::mount::helper_main() {
        return code;
    }
    let cli = Cli::parse();
    let command = match (cli.command, cli.config) {
        (Some(command), _) => command,
        (None, Some(config)) => return exit_with(cli::dropin::main(&config, cli.tls)),
        // `arg_required_else_help` only fires with no arguments at all: `--log-level info`
        // alone gets here, and gets a usage error.
        (None, None) => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            let error = cmd.error(
                clap::error::ErrorKind::MissingSubcommand,
                "a subcommand (run, cert, check, mount, …) or a drop-in CONFIG file is required",
            );
            error.exit()
        }
    };
    match &command {
        // The mount's detached daemons log to its state directory, rotated by size.
        Command::MountSupervisor(d) | Command::MountProxy(d) => {
            cli::mount_daemon::init_logging(&d.dir, &cli.log_level);
        }
        _ => init_logging(&cli.log_level),
    }
    let command = match command {
        Command::Mount(args) => return cli::mount::mount_main(args, "efs-proxy mount"),
        Command::Umount(args) => return cli::mount_admin::umount_main(&args),
        Command::Mounts(args) => return cli::mount_admin::mounts_main(&args),
        Command::InstallMountHelper(args) => return cli::mount_admin::install_main(&args),
        Command::GenerateAssets(args) => {
            use clap::CommandFactory;
            return exit_with(cli::assets::generate(&args, Cli::command()));
        }
        Command::MountSupervisor(d) => {
            return exit_with(cli::mount_daemon::supervisor_main(&d.dir, d.parent));
        }
        other => other,
    };
    let runtime = match cli::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        Command::Run(args) => runtime.block_on(cli::run::run(args)),
        Command::Cert(args) => runtime.block_on(cli::cert::run(args)),
        Command::Check(args) => return runtime.block_on(cli::check::run(args)),
        Command::MountProxy(d) => runtime.block_on(cli::mount_daemon::proxy_main(&d.dir)),
        _ => unreachable!("handled before the runtime"),
    };
    exit_with(result)
}

/// Exit status 0, or 1 with one `error:` line on stderr (never a panic backtrace).
fn exit_with(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli::report(&e));
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(cli::log_filter(level))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .finish()
        .with(cli::without_request_dumps())
        .init();
}
