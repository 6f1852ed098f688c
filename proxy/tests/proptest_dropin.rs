//! Property tests of the drop-in config parser: any config efs-utils could write (either
//! spelling of each key, either section name, LF or CRLF, comments, unknown keys, spaces around
//! `=`, any case of booleans and levels) parses back to the values written; a known key given
//! twice is always an error naming it. `fuzz/` feeds the parser arbitrary bytes.

use std::net::SocketAddr;
use std::path::PathBuf;

use efs_proxy::internal::dropin::{DropInConfig, LogDestination, parse};
use proptest::prelude::*;

/// The values one config carries, and how it spells them.
#[derive(Debug, Clone)]
struct Written {
    fips: (bool, &'static str),
    pid: (String, &'static str),
    section: &'static str,
    accept: (SocketAddr, &'static str),
    connect: (String, &'static str),
    cert: Option<(String, &'static str)>,
    key: Option<(String, &'static str)>,
    check_host: Option<(String, &'static str)>,
    ca_file: Option<(String, &'static str)>,
    fs_id: Option<String>,
    level: Option<String>,
    debug: Option<String>,
    output: Option<String>,
    stdout: bool,
    max_bytes: Option<u64>,
    file_count: Option<u32>,
    timeout: Option<u64>,
    crlf: bool,
    equals: &'static str,
    noise: Vec<String>,
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

fn path() -> impl Strategy<Value = String> {
    "/[A-Za-z0-9_.+-]{1,12}(/[A-Za-z0-9_.+-]{1,12}){0,3}"
}

fn host() -> impl Strategy<Value = String> {
    "[a-z0-9-]{1,12}(\\.[a-z0-9-]{1,12}){0,4}:[0-9]{1,5}"
}

fn spelled<T: std::fmt::Debug + Clone>(
    value: impl Strategy<Value = T>,
    spellings: &'static [&'static str],
) -> impl Strategy<Value = (T, &'static str)> {
    (value, prop::sample::select(spellings))
}

fn mixed_case(s: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<bool>(), s.len()).prop_map(move |upper| {
        s.chars()
            .zip(upper)
            .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

fn boolean() -> impl Strategy<Value = (bool, &'static str)> {
    prop::sample::select(
        &[
            (true, "yes"),
            (true, "true"),
            (true, "1"),
            (true, "Yes"),
            (true, "TRUE"),
            (false, "no"),
            (false, "false"),
            (false, "0"),
            (false, "No"),
            (false, "FALSE"),
        ][..],
    )
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), 1u16..).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u16; 8]>(), 1u16..).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
    ]
}

fn written() -> impl Strategy<Value = Written> {
    let core = (
        boolean(),
        spelled(path(), &["pid", "pid_file_path"]),
        prop::sample::select(&["efs", "nested_config"][..]),
        spelled(socket_addr(), &["accept", "listen_addr"]),
        spelled(host(), &["connect", "mount_target_addr"]),
        prop::option::of(spelled(path(), &["cert", "client_cert_pem_file"])),
        prop::option::of(spelled(path(), &["key", "client_private_key_pem_file"])),
        prop::option::of(spelled(
            "[a-z0-9.-]{1,40}",
            &["checkHost", "expected_server_hostname_tls"],
        )),
        prop::option::of(spelled(path(), &["CAfile", "ca_file"])),
        prop::option::of("fs-[0-9a-f]{8,17}"),
    );
    let level = prop::sample::select(&LEVELS[..]).prop_flat_map(mixed_case);
    let logging = (
        prop::option::of(prop_oneof![level.clone(), "[a-z]{1,8}"]),
        prop::option::of(prop_oneof![level, "[A-Za-z]{1,8}"]),
        prop::option::of(path()),
        any::<bool>(),
        prop::option::of(any::<u64>()),
        // proxy_logging_file_count: at most 1000 (more is refused, see dropin.rs).
        prop::option::of(0u32..=1000),
        prop::option::of(any::<u64>()),
    );
    let style = (
        any::<bool>(),
        prop::sample::select(&["=", " = ", "  =\t", "= "][..]),
        prop::collection::vec(
            prop_oneof![
                "# [a-z =]{0,20}",
                "; [a-z =]{0,20}",
                "socket = [a-z:=_]{1,20}",
                "TIMEOUTidle = [0-9]{1,3}",
                "cloud_watch_logs = (True|False)",
                Just(String::new()),
            ],
            0..4,
        ),
    );
    (core, logging, style).prop_map(
        |(
            (fips, pid, section, accept, connect, cert, key, check_host, ca_file, fs_id),
            (level, debug, output, stdout, max_bytes, file_count, timeout),
            (crlf, equals, noise),
        )| Written {
            fips,
            pid,
            section,
            accept,
            connect,
            cert,
            key,
            check_host,
            ca_file,
            fs_id,
            level,
            debug,
            output,
            stdout,
            max_bytes,
            file_count,
            timeout,
            crlf,
            equals,
            noise,
        },
    )
}

impl Written {
    fn text(&self) -> String {
        let eq = self.equals;
        let mut global = vec![
            format!("fips{eq}{}", self.fips.1),
            format!("{}{eq}{}", self.pid.1, self.pid.0),
        ];
        if let Some(d) = &self.debug {
            global.push(format!("debug{eq}{d}"));
        }
        if let Some(o) = &self.output {
            global.push(format!("output{eq}{o}"));
        }
        if self.stdout {
            global.push(format!("log_format{eq}stdout"));
        }
        let mut section = vec![
            format!("{}{eq}{}", self.accept.1, self.accept.0),
            format!("{}{eq}{}", self.connect.1, self.connect.0),
        ];
        for (value, spelling) in [&self.cert, &self.key, &self.check_host, &self.ca_file]
            .into_iter()
            .flatten()
        {
            section.push(format!("{spelling}{eq}{value}"));
        }
        if let Some(fs) = &self.fs_id {
            section.push(format!("fs_id{eq}{fs}"));
        }
        if let Some(l) = &self.level {
            section.push(format!("proxy_logging_level{eq}{l}"));
        }
        if let Some(n) = self.max_bytes {
            section.push(format!("proxy_logging_max_bytes{eq}{n}"));
        }
        if let Some(n) = self.file_count {
            section.push(format!("proxy_logging_file_count{eq}{n}"));
        }
        if let Some(n) = self.timeout {
            section.push(format!("retry_nfs_mount_command_timeout_sec{eq}{n}"));
        }
        // Unknown keys and comments, in both sections.
        let noise = self.noise.iter().cloned();
        let mut lines: Vec<String> = global.into_iter().chain(noise.clone()).collect();
        lines.push(format!("[{}]", self.section));
        lines.extend(section);
        lines.extend(noise);
        lines.join(if self.crlf { "\r\n" } else { "\n" })
    }

    fn expected_level(&self) -> String {
        [&self.level, &self.debug]
            .into_iter()
            .flatten()
            .find(|l| LEVELS.iter().any(|known| known.eq_ignore_ascii_case(l)))
            .map(|l| l.to_ascii_lowercase())
            .unwrap_or_else(|| "warn".into())
    }

    fn check(&self, c: &DropInConfig) -> Result<(), TestCaseError> {
        prop_assert_eq!(c.fips, self.fips.0);
        prop_assert_eq!(&c.pid_file, &PathBuf::from(&self.pid.0));
        prop_assert_eq!(c.accept, self.accept.0);
        prop_assert_eq!(&c.connect, &self.connect.0);
        let path = |v: &Option<(String, &str)>| v.as_ref().map(|(p, _)| PathBuf::from(p));
        prop_assert_eq!(&c.cert, &path(&self.cert));
        prop_assert_eq!(&c.key, &path(&self.key));
        prop_assert_eq!(&c.ca_file, &path(&self.ca_file));
        prop_assert_eq!(
            &c.check_host,
            &self.check_host.as_ref().map(|(h, _)| h.clone())
        );
        prop_assert_eq!(&c.fs_id, &self.fs_id);
        prop_assert_eq!(&c.log_level, &self.expected_level());
        prop_assert_eq!(c.init_timeout_sec, self.timeout.unwrap_or(15));
        let log = if self.stdout {
            LogDestination::Stdout
        } else {
            match &self.output {
                Some(p) => LogDestination::File {
                    path: p.into(),
                    max_bytes: self.max_bytes.unwrap_or(1_048_576),
                    file_count: self.file_count.map_or(10, |n| n as usize),
                },
                None => LogDestination::Off,
            }
        };
        prop_assert_eq!(&c.log, &log);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn configs_efs_utils_could_write_parse_back(w in written()) {
        let text = w.text();
        let config = parse(&text, "w.conf").map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        w.check(&config)?;
    }

    #[test]
    fn a_known_key_given_twice_is_an_error_naming_it(
        w in written(),
        second in prop::sample::select(&[
            ("accept", "accept"),
            ("listen_addr", "accept"),
            ("connect", "connect"),
            ("mount_target_addr", "connect"),
            ("fips", "fips"),
        ][..]),
    ) {
        let (spelling, key) = second;
        let mut text = w.text();
        if key == "fips" {
            text = format!("fips = no\n{text}");
        } else {
            text.push_str(&format!("\n{spelling} = 127.0.0.1:1\n"));
        }
        let err = parse(&text, "w.conf").unwrap_err().to_string();
        prop_assert!(
            err.starts_with("w.conf: ") && err.contains(&format!("key `{key}` is given more than once")),
            "{}", err
        );
    }
}
