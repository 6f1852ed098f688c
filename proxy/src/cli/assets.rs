//! `efs-proxy generate-assets --out DIR`: the man pages and shell completions a package
//! installs, made from the same clap definitions as `--help`, so they never drift from it.
//!
//! Hidden from `--help`: it is a build step (`packaging/build-deb.sh` runs it), not
//! something a user of the proxy needs.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use clap_complete::Shell;

#[derive(Args, Debug)]
pub(crate) struct AssetsArgs {
    /// Directory to write into: `man/` (efs-proxy.1 and one page per subcommand) and
    /// `completions/` (bash, zsh, fish). Created if missing.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Writes every man page and completion script for `command` (the whole `efs-proxy`
/// command line) under `args.out`, and lists what it wrote on stdout.
pub(crate) fn generate(args: &AssetsArgs, command: clap::Command) -> anyhow::Result<()> {
    let man = args.out.join("man");
    let completions = args.out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create {} (give --out a directory you can write)",
                dir.display()
            )
        })?;
    }
    // clap_mangen writes efs-proxy.1 and efs-proxy-SUBCOMMAND.1 for every visible subcommand.
    clap_mangen::generate_to(command.clone(), &man)
        .with_context(|| format!("cannot write the man pages into {}", man.display()))?;
    let mut command = command;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, "efs-proxy", &completions).with_context(
            || {
                format!(
                    "cannot write the {shell} completions into {}",
                    completions.display()
                )
            },
        )?;
    }
    list(&man)?;
    list(&completions)
}

/// Prints the files of `dir`, sorted: what a packaging script picks up.
fn list(dir: &Path) -> anyhow::Result<()> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    names.sort();
    for name in names {
        println!("{}", name.display());
    }
    Ok(())
}
