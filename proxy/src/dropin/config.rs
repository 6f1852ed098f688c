//! The config file efs-utils' mount helpers write for `efs-proxy CONFIG [--tls]`.
//!
//! It is stunnel-flavoured INI (`docs/protocol.md` §8.2): global keys, then one `[efs]` (or
//! `[nested_config]`) section. Both the stunnel spelling and efs-proxy's field name are
//! accepted for each key; unknown keys (stunnel's own, CloudWatch, ReadBypass) are ignored; a
//! known key given twice is an error, as in efs-proxy. Parsed with `rust-ini`, with quotes and
//! escapes off so Windows-looking paths and `#` inside values stay as written.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ini::{Ini, ParseOption, Properties};
use thiserror::Error;

use crate::listen::peer::UidPolicy;

/// Section names efs-proxy accepts for the connection settings.
const SECTIONS: [&str; 2] = ["efs", "nested_config"];

/// A config file that cannot be used. Each message names the file and the key.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{file}: cannot read the config file: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not INI; `source` names the line.
    #[error("{file}: not a valid INI file: {source}")]
    Syntax {
        file: String,
        #[source]
        source: ini::ParseError,
    },
    /// A key every config must have is absent.
    #[error("{file}: missing required key `{key}`{where_}")]
    Missing {
        file: String,
        key: &'static str,
        where_: &'static str,
    },
    /// A key is given twice (in either spelling), which efs-proxy refuses too.
    #[error("{file}: key `{key}` is given more than once (as {spellings})")]
    Duplicate {
        file: String,
        key: &'static str,
        spellings: String,
    },
    /// A value that cannot be used; `expected` says what can.
    #[error("{file}: `{key} = {value}`: {expected}")]
    Invalid {
        file: String,
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    /// Neither section that holds the connection settings.
    #[error("{file}: no [efs] section (efs-proxy also accepts [nested_config])")]
    NoSection { file: String },
}

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDestination {
    /// A file, rotated by size.
    File {
        /// `output`: the log file.
        path: PathBuf,
        /// `proxy_logging_max_bytes`: the size at which the file is rotated (default 1 MiB).
        max_bytes: u64,
        /// `proxy_logging_file_count`: rotated files kept (default 10).
        file_count: usize,
    },
    /// Standard output.
    Stdout,
    /// Nowhere but errors on stderr (efs-proxy: `log_format = file` without `output`).
    Off,
}

/// The settings efs-proxy reads from its config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropInConfig {
    /// `fips`: FIPS 140-3 validated cryptography required (needs a `fips` build).
    pub fips: bool,
    /// `pid` (or `pid_file_path`): where the proxy writes its process id (efs-utils'
    /// watchdog reads it).
    pub pid_file: PathBuf,
    /// `proxy_logging_level`, else `debug`, else `warn`.
    pub log_level: String,
    /// Where log lines go.
    pub log: LogDestination,
    /// `connect`: `host:port` dialled for every server connection.
    pub connect: String,
    /// `accept`: the listen address.
    pub accept: SocketAddr,
    /// `cert` (or `client_cert_pem_file`): the client certificate PEM for TLS mounts,
    /// re-read on SIGHUP when efs-utils has renewed it.
    pub cert: Option<PathBuf>,
    /// `key` (or `client_private_key_pem_file`): the private key of `cert`.
    pub key: Option<PathBuf>,
    /// `checkHost`: SNI and expected name; `None` disables name checks.
    pub check_host: Option<String>,
    /// `CAfile`: `None` disables certificate verification (efs-utils' verify=0).
    pub ca_file: Option<PathBuf>,
    /// `fs_id`: the file system id, as efs-utils writes it (informational).
    pub fs_id: Option<String>,
    /// `retry_nfs_mount_command_timeout_sec`: the initial connection must finish within this
    /// minus one second.
    pub init_timeout_sec: u64,
    /// `allow_uid` (this proxy's own key, in `[efs]`): the local users served. Absent: any
    /// user, as efs-proxy.
    pub allow_uid: UidPolicy,
}

/// Most rotated log files kept (`proxy_logging_file_count`).
pub(crate) const MAX_LOG_FILES: u64 = 1000;

/// Reads and parses a config file.
pub fn load(path: &Path) -> Result<DropInConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses config text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<DropInConfig, ConfigError> {
    let options = ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        ..ParseOption::default()
    };
    let ini = Ini::load_from_str_opt(text, options).map_err(|source| ConfigError::Syntax {
        file: file.to_string(),
        source,
    })?;
    let global = ini.general_section();
    let section = SECTIONS.iter().find_map(|name| ini.section(Some(*name)));
    let empty = Properties::new();
    let keys = Keys {
        file,
        global,
        section: section.unwrap_or(&empty),
    };

    let fips = keys.global_bool("fips")?.ok_or(keys.missing("fips", ""))?;
    let pid_file = keys
        .global_str(&["pid", "pid_file_path"], "pid")?
        .ok_or(keys.missing("pid", ""))?;
    let debug = keys.global_str(&["debug"], "debug")?;
    let output = keys.global_str(&["output"], "output")?;
    let log_format = keys.global_str(&["log_format"], "log_format")?;
    if section.is_none() {
        return Err(ConfigError::NoSection {
            file: file.to_string(),
        });
    }

    let connect = keys
        .str(&["connect", "mount_target_addr"], "connect")?
        .ok_or(keys.missing("connect", " in [efs]"))?;
    let accept = accept_addr(&keys)?;
    let level = keys.str(&["proxy_logging_level"], "proxy_logging_level")?;
    let init_timeout_sec = keys
        .number("retry_nfs_mount_command_timeout_sec")?
        .or(keys.number("proxy_init_timeout_sec")?)
        .unwrap_or(15);
    let log = log_destination(&keys, log_format.as_deref(), output)?;
    let log_level = [level, debug]
        .into_iter()
        .flatten()
        .find(|l| is_level(l))
        .unwrap_or_else(|| "warn".to_string())
        .to_ascii_lowercase();

    Ok(DropInConfig {
        fips,
        pid_file: pid_file.into(),
        log_level,
        log,
        connect,
        accept,
        cert: keys
            .str(&["cert", "client_cert_pem_file"], "cert")?
            .map(PathBuf::from),
        key: keys
            .str(&["key", "client_private_key_pem_file"], "key")?
            .map(PathBuf::from),
        check_host: keys.str(&["checkHost", "expected_server_hostname_tls"], "checkHost")?,
        ca_file: keys
            .str(&["CAfile", "ca_file"], "CAfile")?
            .map(PathBuf::from),
        fs_id: keys.str(&["fs_id"], "fs_id")?,
        init_timeout_sec,
        allow_uid: match keys.str(&["allow_uid"], "allow_uid")? {
            None => UidPolicy::Any,
            Some(text) => UidPolicy::parse(&text).map_err(|_| {
                keys.invalid(
                    "allow_uid",
                    &text,
                    "expected `any` or numeric uids separated by commas (root and the proxy's \
                     own uid are always served)",
                )
            })?,
        },
    })
}

/// `accept` (or `listen_addr`): the address to listen on.
fn accept_addr(keys: &Keys<'_>) -> Result<SocketAddr, ConfigError> {
    let text = keys
        .str(&["accept", "listen_addr"], "accept")?
        .ok_or(keys.missing("accept", " in [efs]"))?;
    text.parse().map_err(|_| {
        keys.invalid(
            "accept",
            &text,
            "expected IP:PORT with a port of 1-65535, e.g. 127.0.0.1:20049",
        )
    })
}

/// Where the log goes: `log_format = file` (the default) writes `output` with rotation by
/// `proxy_logging_max_bytes` and `proxy_logging_file_count`, no `output` means no log;
/// `stdout` is the container case.
fn log_destination(
    keys: &Keys<'_>,
    log_format: Option<&str>,
    output: Option<String>,
) -> Result<LogDestination, ConfigError> {
    let max_bytes = keys.number("proxy_logging_max_bytes")?.unwrap_or(1_048_576);
    let file_count = keys.number("proxy_logging_file_count")?.unwrap_or(10);
    // Each rotation renames every kept file: a count in the billions would never finish.
    if file_count > MAX_LOG_FILES {
        return Err(keys.invalid(
            "proxy_logging_file_count",
            &file_count.to_string(),
            "expected at most 1000 rotated log files",
        ));
    }
    match log_format {
        None | Some("file") => Ok(match output {
            Some(path) => LogDestination::File {
                path: path.into(),
                max_bytes,
                file_count: file_count as usize,
            },
            None => LogDestination::Off,
        }),
        Some("stdout") => Ok(LogDestination::Stdout),
        Some(other) => Err(keys.invalid("log_format", other, "expected `file` or `stdout`")),
    }
}

fn is_level(level: &str) -> bool {
    ["off", "error", "warn", "info", "debug", "trace"]
        .iter()
        .any(|l| l.eq_ignore_ascii_case(level))
}

/// Typed access to the keys of the global section and the `[efs]` section.
struct Keys<'a> {
    file: &'a str,
    global: &'a Properties,
    section: &'a Properties,
}

impl Keys<'_> {
    fn missing(&self, key: &'static str, where_: &'static str) -> ConfigError {
        ConfigError::Missing {
            file: self.file.to_string(),
            key,
            where_,
        }
    }

    /// The value of a key known under several spellings, refusing repeats. Empty values count
    /// as absent (efs-utils writes `cert =` style empties for optional paths).
    fn one(
        &self,
        props: &Properties,
        spellings: &[&str],
        key: &'static str,
    ) -> Result<Option<String>, ConfigError> {
        let found: Vec<(&str, &str)> = spellings
            .iter()
            .flat_map(|s| props.get_all(s).map(move |v| (*s, v)))
            .collect();
        if found.len() > 1 {
            let spellings: Vec<&str> = found.iter().map(|(s, _)| *s).collect();
            return Err(ConfigError::Duplicate {
                file: self.file.to_string(),
                key,
                spellings: spellings.join(", "),
            });
        }
        Ok(found
            .first()
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty()))
    }

    fn global_str(
        &self,
        spellings: &[&str],
        key: &'static str,
    ) -> Result<Option<String>, ConfigError> {
        self.one(self.global, spellings, key)
    }

    fn str(&self, spellings: &[&str], key: &'static str) -> Result<Option<String>, ConfigError> {
        self.one(self.section, spellings, key)
    }

    fn global_bool(&self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        self.global_str(&[key], key)?
            .map(|v| parse_bool(&v).ok_or_else(|| self.invalid(key, &v, BOOL)))
            .transpose()
    }

    fn number(&self, key: &'static str) -> Result<Option<u64>, ConfigError> {
        self.str(&[key], key)?
            .map(|v| {
                v.parse()
                    .map_err(|_| self.invalid(key, &v, "expected a whole number"))
            })
            .transpose()
    }

    fn invalid(&self, key: &'static str, value: &str, expected: &'static str) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            key,
            value: value.to_string(),
            expected,
        }
    }
}

const BOOL: &str = "expected yes/no, true/false or 1/0";

/// efs-proxy's booleans: `true|yes|1|false|no|0`, any case.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/protocol.md` §8.4: the config efs-utils 3.2.0 writes for an S3 Files mount
    /// (no trailing newline).
    pub(crate) const S3FILES_CONFIG: &str = include_str!("../../tests/vectors/dropin/s3files.conf");

    /// The I/O and INI errors are kept as causes; the messages name the file and quote them.
    #[test]
    fn unreadable_and_unparsable_files_keep_their_causes() {
        let err = load(Path::new("/nonexistent/efs.conf")).unwrap_err();
        let io = std::error::Error::source(&err).and_then(|e| e.downcast_ref::<std::io::Error>());
        assert_eq!(
            io.map(std::io::Error::kind),
            Some(std::io::ErrorKind::NotFound)
        );
        assert!(
            err.to_string()
                .starts_with("/nonexistent/efs.conf: cannot read the config file: "),
            "{err}"
        );
        let err = parse("fips = no\n[efs\n", "f.conf").unwrap_err();
        let cause = std::error::Error::source(&err).expect("rust-ini's error");
        assert!(cause.downcast_ref::<ini::ParseError>().is_some());
        assert_eq!(
            err.to_string(),
            format!("f.conf: not a valid INI file: {cause}")
        );
    }

    #[test]
    fn the_s3files_config_of_efs_utils_parses() {
        let c = parse(S3FILES_CONFIG, "s3files.conf").unwrap();
        assert!(!c.fips);
        assert_eq!(
            c.pid_file,
            Path::new("/var/run/efs/fs-0123456789abcdef0.mnt.s3files.20100+/stunnel.pid")
        );
        assert_eq!(c.accept, "127.0.0.1:20100".parse().unwrap());
        assert_eq!(
            c.connect,
            "use1-az1.fs-0123456789abcdef0.s3files.us-east-1.on.aws:2049"
        );
        assert_eq!(
            c.check_host.as_deref(),
            Some("fs-0123456789abcdef0.s3files.us-east-1.on.aws")
        );
        assert_eq!(c.ca_file, Some("/etc/amazon/efs/efs-utils.crt".into()));
        assert_eq!(c.key, Some("/etc/amazon/efs/privateKey.pem".into()));
        assert_eq!(c.log_level, "info");
        assert_eq!(
            c.log,
            LogDestination::File {
                path: "/var/log/amazon/efs/fs-0123456789abcdef0.mnt.s3files.20100.efs-proxy.log"
                    .into(),
                max_bytes: 1_048_576,
                file_count: 10
            }
        );
        assert_eq!(c.init_timeout_sec, 15);
        assert_eq!(c.fs_id.as_deref(), Some("fs-0123456789abcdef0"));
    }

    #[test]
    fn an_efs_config_with_aliases_crlf_and_comments_parses() {
        let text = "# written by a test\r\n; another comment\r\nfips = No\r\npid_file_path = /run/p.pid\r\ndebug = DEBUG\r\n[nested_config]\r\nlisten_addr = 127.0.0.1:20200\r\nmount_target_addr = fs-1.efs.eu-west-1.amazonaws.com:2049\r\n[other]\r\nfips = yes\r\n";
        let c = parse(text, "efs.conf").unwrap();
        assert_eq!(c.pid_file, Path::new("/run/p.pid"));
        assert_eq!(c.accept.port(), 20200);
        assert_eq!(c.connect, "fs-1.efs.eu-west-1.amazonaws.com:2049");
        assert_eq!(c.log_level, "debug");
        assert_eq!(
            c.log,
            LogDestination::Off,
            "EFS proxies log nothing without output"
        );
        assert_eq!((c.cert, c.ca_file, c.check_host), (None, None, None));
    }

    #[test]
    fn booleans_accept_every_spelling() {
        for (v, b) in [
            ("yes", true),
            ("TRUE", true),
            ("1", true),
            ("no", false),
            ("False", false),
            ("0", false),
        ] {
            let text =
                format!("fips = {v}\npid = /p\n[efs]\naccept = 127.0.0.1:1\nconnect = h:2049\n");
            assert_eq!(parse(&text, "f").unwrap().fips, b, "{v}");
        }
    }

    #[test]
    fn stdout_logging_and_level_fallbacks() {
        let text = "fips = no\npid = /p\nlog_format = stdout\ndebug = nonsense\n[efs]\naccept = 127.0.0.1:1\nconnect = h:2049\nproxy_logging_level = loud\n";
        let c = parse(text, "f").unwrap();
        assert_eq!(c.log, LogDestination::Stdout);
        assert_eq!(c.log_level, "warn");
    }

    #[test]
    fn every_malformed_config_names_the_key_and_the_file() {
        let base = "fips = no\npid = /p\n[efs]\naccept = 127.0.0.1:20049\nconnect = h:2049\n";
        let cases: Vec<(String, &str)> = vec![
            (
                base.replace("fips = no\n", ""),
                "f.conf: missing required key `fips`",
            ),
            (
                base.replace("pid = /p\n", ""),
                "f.conf: missing required key `pid`",
            ),
            (
                base.replace("accept = 127.0.0.1:20049\n", ""),
                "missing required key `accept` in [efs]",
            ),
            (
                base.replace("connect = h:2049\n", ""),
                "missing required key `connect` in [efs]",
            ),
            (base.replace("[efs]", "[wrong]"), "f.conf: no [efs] section"),
            (
                format!("{base}accept = 127.0.0.1:1\n"),
                "key `accept` is given more than once",
            ),
            (
                format!("{base}listen_addr = 127.0.0.1:1\n"),
                "(as accept, listen_addr)",
            ),
            (
                base.replace("fips = no", "fips = maybe"),
                "`fips = maybe`: expected yes/no",
            ),
            (
                base.replace("127.0.0.1:20049", "127.0.0.1:99999"),
                "`accept = 127.0.0.1:99999`: expected IP:PORT",
            ),
            (
                base.replace("127.0.0.1:20049", "localhost"),
                "`accept = localhost`",
            ),
            (
                format!("{base}proxy_logging_max_bytes = -5\n"),
                "`proxy_logging_max_bytes = -5`: expected a whole number",
            ),
            (
                base.replace("pid = /p", "pid = /p\nlog_format = xml"),
                "`log_format = xml`",
            ),
            (
                format!("{base}proxy_logging_file_count = 18446744073709551615\n"),
                "`proxy_logging_file_count = 18446744073709551615`: expected at most 1000",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(&text, "f.conf").unwrap_err().to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    #[test]
    fn any_user_is_served_unless_allow_uid_says_otherwise() {
        let base = "fips = no\npid = /p\n[efs]\naccept = 127.0.0.1:1\nconnect = h:2049\n";
        assert_eq!(parse(base, "f").unwrap().allow_uid, UidPolicy::Any);
        let listed = parse(&format!("{base}allow_uid = 1000,1001\n"), "f").unwrap();
        assert_eq!(listed.allow_uid, UidPolicy::Only(vec![1000, 1001]));
        let err = parse(&format!("{base}allow_uid = bob\n"), "f.conf")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("f.conf: `allow_uid = bob`: expected `any`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_and_repeated_unknown_keys_are_ignored() {
        let text = "fips = no\npid = /p\nsocket = a\nsocket = b\nread_bypass_requested = true\n[efs]\naccept = 127.0.0.1:1\nconnect = h:2049\ns3_read_chunk_size_bytes = 1\nTIMEOUTidle = 70\n";
        assert!(parse(text, "f").is_ok());
    }

    #[test]
    fn missing_file_is_reported_with_its_path() {
        let err = load(Path::new("/nonexistent/efs.conf"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/nonexistent/efs.conf: cannot read"),
            "{err}"
        );
    }
}
