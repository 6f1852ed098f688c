//! The efs-utils config file of drop-in mode (`efs-proxy CONFIG`): any text either parses to
//! settings that satisfy the documented rules or gives an error naming the file; never a
//! panic.
#![no_main]

use efs_proxy::internal::dropin::{LogDestination, parse, parse_bool};
use libfuzzer_sys::fuzz_target;

const FILE: &str = "fuzz.conf";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse(&text, FILE) {
        Ok(config) => {
            assert!(!config.connect.is_empty() && config.connect.trim() == config.connect);
            assert!(!config.pid_file.as_os_str().is_empty());
            assert!(
                ["off", "error", "warn", "info", "debug", "trace"]
                    .contains(&config.log_level.as_str()),
                "{}",
                config.log_level
            );
            if let LogDestination::File { path, .. } = &config.log {
                assert!(!path.as_os_str().is_empty());
            }
            for value in [&config.check_host, &config.fs_id].into_iter().flatten() {
                assert!(!value.is_empty() && value.trim() == value);
            }
            let _ = format!("{config:?}");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.starts_with(&format!("{FILE}: ")),
                "error does not name the file: {message}"
            );
            // One line (the README's promise): keys and values come from single lines.
            assert!(!message.contains('\n'), "multi-line error: {message:?}");
        }
    }
    if let Some(b) = parse_bool(&text) {
        assert_eq!(parse_bool(if b { "yes" } else { "no" }), Some(b));
    }
});
