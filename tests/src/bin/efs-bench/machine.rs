//! Figures beside the tables: the cipher's cost on one core and the proxy's multiplexing
//! curve.

use std::path::Path;
use std::time::{Duration, Instant};

use efs_proxy_tests::bench::{self, Flow};

use crate::args::Args;
use crate::forwarder::{announced, proxy_args};
use crate::{GIB, IN_FLIGHT, MIB, SIZE};

/// The cipher every TLS forwarder here negotiates with the fake mount target (rustls and
/// OpenSSL both put it first).
pub(crate) const CIPHER: &str = "AES-256-GCM";

/// What [`CIPHER`] costs one core per GiB, sealing 16 KiB records (TLS's largest) for about
/// a second with ring, the library efs-proxy uses.
pub(crate) fn cipher_s_per_gib() -> f64 {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let key = UnboundKey::new(&AES_256_GCM, &[7; 32]).expect("a 32-byte key");
    let key = LessSafeKey::new(key);
    let mut record = vec![0x5a_u8; 16 * 1024];
    let started = Instant::now();
    let mut sealed = 0usize;
    while started.elapsed() < Duration::from_secs(1) {
        for _ in 0..64 {
            // One nonce for every record: nothing here is secret, only the time counts.
            let nonce = Nonce::assume_unique_for_key([0; 12]);
            let tag = key.seal_in_place_separate_tag(nonce, Aad::empty(), &mut record);
            let _tag = std::hint::black_box(tag.expect("sealing a 16 KiB record"));
            sealed += record.len();
        }
    }
    started.elapsed().as_secs_f64() / (sealed as f64 / GIB)
}

/// The proxy's WRITE throughput with multiplexing allowed up to 1, 2 and 4 connections.
pub(crate) async fn multiplex_curve(
    target_bin: &Path,
    proxy_bin: &Path,
    dir: &Path,
    args: &Args,
) -> anyhow::Result<Vec<(usize, f64)>> {
    let mut curve = Vec::new();
    for n in [1, 2, 4] {
        let pki = dir.join(format!("mux{n}"));
        let target = announced(
            target_bin,
            &[
                "--pki-dir".into(),
                pki.display().to_string(),
                "--backend".into(),
                "bench".into(),
                "--scale-max".into(),
                n.to_string(),
                "--scale-threshold".into(),
                "1000000".into(),
            ],
        )
        .await?;
        let proxy = announced(proxy_bin, &proxy_args(target.addr, &pki, true)).await?;
        eprintln!("measuring efs-proxy with up to {n} connections ...");
        // Load long enough for the 3 s scale-up window, then measure.
        let measure_for = Duration::from_secs(args.seconds);
        bench::throughput(
            proxy.addr,
            Flow::Write,
            SIZE,
            IN_FLIGHT,
            Duration::from_secs(4) + measure_for,
        )
        .await?;
        let (w, wt) =
            bench::throughput(proxy.addr, Flow::Write, SIZE, IN_FLIGHT, measure_for).await?;
        curve.push((n, w as f64 / MIB / wt.as_secs_f64()));
    }
    Ok(curve)
}
