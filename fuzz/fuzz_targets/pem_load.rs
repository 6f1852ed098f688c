//! PEM loading: the client certificate chain, the CA file (parsed into trust anchors), the
//! private key (PKCS#8, PKCS#1, ECDSA; efs-utils' files with `# ` comment lines), and the
//! identity from both. Whatever the file holds: no panic, and every error names the file.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use efs_proxy::Trust;
use efs_proxy::iam::ClientKey;
use efs_proxy::internal::upstream::{self as tls, ClientIdentity};
use libfuzzer_sys::fuzz_target;

/// One scratch file per fuzzing process: the loaders read files, as in production.
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("efs-proxy-fuzz-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("input.pem")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).unwrap();
    let named = |message: String| {
        assert!(message.contains(&*path.to_string_lossy()), "{message}");
    };

    match tls::load_certificates(path) {
        Ok(chain) => assert!(!chain.is_empty()),
        Err(e) => named(e.to_string()),
    }

    match ClientKey::from_pem(data, path) {
        Ok(key) => {
            assert_eq!(key.public_key_hash().len(), 40);
            let _ = key.private_key_der();
            let _ = format!("{key:?}");
        }
        Err(e) => named(e.to_string()),
    }

    match ClientIdentity::from_pem_files(path, path) {
        Ok(identity) => {
            // A certificate and a key in one file: rustls checks that they belong together.
            let _ = tls::client_config(&Trust::NoVerify, true, Some(&identity));
        }
        Err(e) => named(e.to_string()),
    }

    // The same file as a CA file: each certificate becomes a trust anchor.
    if let Err(e) = tls::client_config(&Trust::CaFile(path.clone()), true, None) {
        named(e.to_string());
    }
});
