//! Subcommands of the `efs-proxy` binary.

pub mod cert;
pub mod check;
pub mod iam;
pub mod legacy;
pub mod run;
pub mod target;

/// The Tokio runtime of every subcommand: multi-threaded, one worker per core unless
/// `EFS_PROXY_WORKER_THREADS` says otherwise (the benchmark compares settings with it).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("EFS_PROXY_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        builder.worker_threads(n);
    }
    builder.enable_all().build()
}
