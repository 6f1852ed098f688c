//! What `efs-proxy check` decodes from certificates: the client certificate's subject,
//! validity and efs-utils extensions (1.3.6.1.4.1.4843.7.1–.4, `iam::certificate::decode`),
//! and the server certificate's
//! subject, issuer, names and expiry. Never a panic; every string taken from a server
//! certificate reaches the terminal with its control characters escaped.
#![no_main]

use efs_proxy::iam::certificate;
use efs_proxy::internal::check::decode_server_certificate;
use libfuzzer_sys::fuzz_target;

fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

fuzz_target!(|data: &[u8]| {
    match certificate::decode(data) {
        Ok(info) => {
            let _ = format!("{info:?}");
            if let (Some(from), Some(to)) = (info.not_before, info.not_after) {
                let _ = (from.utc_time(), to.amz_date(), from <= to);
            }
        }
        Err(reason) => assert!(!reason.to_string().is_empty()),
    }
    if let Some(info) = decode_server_certificate(data) {
        assert!(printable(&info.subject), "{:?}", info.subject);
        assert!(printable(&info.issuer), "{:?}", info.issuer);
        for name in &info.names {
            assert!(printable(name), "{name:?}");
        }
        let _ = format!("{info:?}");
    }
});
