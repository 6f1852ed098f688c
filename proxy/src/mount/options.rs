//! Mount options of `efs-proxy mount` / `mount.s3files` / `mount.efs`: efs-utils' names and
//! defaults, this helper's own few, and the NFS options passed through to `mount -t nfs4`.
//!
//! [`parse`] is pure (no I/O, no environment: the caller passes `AWS_REGION` in), so every
//! option and every contradiction is unit-tested and fuzzed. Anything it does not know is an
//! error before anything starts (with `-s`, mount(8)'s sloppy flag, a warning instead).

use std::fmt;
use std::time::Duration;

use crate::iam::{Service, names};

/// Which file system type the helper mounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `mount -t s3files`: NFSv4.2, always TLS with the IAM certificate.
    S3Files,
    /// `mount -t efs`: NFSv4.1, always TLS; the IAM signature only with `iam`.
    Efs,
}

impl Kind {
    /// The file system type as mount(8) names it: `s3files` or `efs`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::S3Files => "s3files",
            Kind::Efs => "efs",
        }
    }

    /// The service the IAM certificate is signed for and whose mount target names are used.
    pub fn service(self) -> Service {
        match self {
            Kind::S3Files => Service::S3Files,
            Kind::Efs => Service::Efs,
        }
    }

    fn default_nfsvers(self) -> &'static str {
        match self {
            Kind::S3Files => "4.2",
            Kind::Efs => "4.1",
        }
    }
}

/// What the caller gives [`parse`].
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The file system type mounted (which helper was called).
    pub kind: Kind,
    /// `FS_ID` or `FS_ID:/PATH`.
    pub spec: &'a str,
    /// The `-o` options, comma-separated (several `-o` joined with commas).
    pub options: &'a str,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`) when `region=` is not given.
    pub env_region: Option<&'a str>,
    /// mount(8)'s `-s`: unknown options are ignored with a warning instead of refused.
    pub sloppy: bool,
}

/// Default seconds the proxy has to become ready (bound, TLS verified, READY bind).
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a mount needs, settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountPlan {
    /// The file system type mounted.
    pub kind: Kind,
    /// The file system id from the spec (`fs-…`).
    pub fs_id: String,
    /// The path inside the file system, starting with `/`.
    pub path: String,
    /// `region=`, else the environment's: the region of the mount target and the signature.
    pub region: String,
    /// `az=`: the AZ id prefix of the mount target's name.
    pub az: Option<String>,
    /// `mounttargetip=` (port 2049) or `target=HOST:PORT`: the address dialled.
    pub target: Option<String>,
    /// `cafile=`: trust anchors instead of the system store.
    pub ca_file: Option<String>,
    /// `accesspoint=`: the access point id, carried in the client certificate (extension 7.1).
    pub access_point: Option<String>,
    /// `awsprofile=`: the named AWS profile whose credentials sign the certificate.
    pub profile: Option<String>,
    /// Whether the certificate carries the SigV4 signature (always for S3 Files).
    pub iam: bool,
    /// `tlsport=`: the loopback port of the proxy (otherwise a free one).
    pub tls_port: Option<u16>,
    /// `readytimeout=`: how long the proxy has to become ready before the mount gives up.
    pub ready_timeout: Duration,
    /// NFS options for `mount -t nfs4` (defaults merged, without `port=`).
    pub nfs: Vec<String>,
    /// Options ignored under `-s`, said as warnings.
    pub warnings: Vec<String>,
}

/// A bad spec or option, said in one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionError(pub String);

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OptionError {}

fn err<T>(text: impl Into<String>) -> Result<T, OptionError> {
    Err(OptionError(text.into()))
}

use names_table::{
    DEFAULTS_AFTER_VERS, EXCLUSIVE, NFS_FLAGS, NFS_VALUES, UNSUPPORTED, USERSPACE_FLAGS,
};

/// Splits `FS_ID[:/PATH]`.
pub fn parse_spec(spec: &str) -> Result<(String, String), OptionError> {
    let (fs_id, path) = match spec.split_once(':') {
        None => (spec, "/"),
        Some((fs, "")) => (fs, "/"),
        Some((fs, path)) => (fs, path),
    };
    if fs_id.contains('.') {
        return err(format!(
            "{spec:?}: give the file system id (fs-0123456789abcdef0[:/path]), not a DNS name"
        ));
    }
    if names::check_fs_id(fs_id).is_err() {
        return err(format!(
            "{spec:?}: expected FS_ID[:/PATH] with FS_ID like fs-0123456789abcdef0"
        ));
    }
    if !path.starts_with('/') || path.chars().any(|c| c.is_control()) {
        return err(format!(
            "{spec:?}: the path must start with / and hold no control characters"
        ));
    }
    Ok((fs_id.to_string(), path.to_string()))
}

/// The options as (key, value) pairs, checked for syntax and repeats.
fn tokens(options: &str) -> Result<Vec<(String, Option<String>)>, OptionError> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for token in options.split(',').filter(|t| !t.is_empty()) {
        let (key, value) = match token.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (token, None),
        };
        let key_ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !key_ok {
            return err(format!("option {token:?}: not an option name"));
        }
        if let Some(v) = value
            && v.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return err(format!(
                "option {key}: the value holds spaces or control characters"
            ));
        }
        if let Some((_, earlier)) = out.iter().find(|(k, _)| k == key) {
            if earlier.as_deref() != value {
                return err(format!(
                    "option {key} is given twice with different values ({} and {})",
                    earlier.as_deref().unwrap_or("no value"),
                    value.unwrap_or("no value")
                ));
            }
            continue;
        }
        out.push((key.to_string(), value.map(str::to_string)));
    }
    for group in EXCLUSIVE {
        let given: Vec<&str> = group
            .iter()
            .copied()
            .filter(|g| out.iter().any(|(k, _)| k == g))
            .collect();
        if given.len() > 1 {
            return err(format!(
                "options {} contradict each other: give one",
                given.join(" and ")
            ));
        }
    }
    Ok(out)
}

/// Settles a mount from the spec and the options.
pub fn parse(req: Request<'_>) -> Result<MountPlan, OptionError> {
    let (fs_id, path) = parse_spec(req.spec)?;
    let mut plan = MountPlan {
        kind: req.kind,
        fs_id,
        path,
        region: String::new(),
        az: None,
        target: None,
        ca_file: None,
        access_point: None,
        profile: None,
        iam: req.kind == Kind::S3Files,
        tls_port: None,
        ready_timeout: DEFAULT_READY_TIMEOUT,
        nfs: Vec::new(),
        warnings: Vec::new(),
    };
    let mut user_nfs: Vec<(String, Option<String>)> = Vec::new();
    let mut region: Option<String> = None;
    for (key, value) in tokens(req.options)? {
        if own_option(&mut plan, &mut region, &key, value.as_deref())? {
            continue;
        }
        match classify(&key, value.as_deref()) {
            Class::Nfs => user_nfs.push((key, value)),
            Class::Userspace => {}
            Class::Refused(why) if req.sloppy => plan.warnings.push(why),
            Class::Refused(why) => return err(why),
        }
    }
    plan.region = match region.or(req.env_region.filter(|r| !r.is_empty()).map(str::to_string)) {
        Some(r) => r,
        None => {
            return err(
                "region= is required (or AWS_REGION in the environment), e.g. -o region=us-east-1",
            );
        }
    };
    check_names(&plan)?;
    plan.nfs = merge_nfs(req.kind, &user_nfs)?;
    Ok(plan)
}

/// Options this helper consumes itself; `Ok(false)` for the others.
fn own_option(
    plan: &mut MountPlan,
    region: &mut Option<String>,
    key: &str,
    value: Option<&str>,
) -> Result<bool, OptionError> {
    fn need<'v>(key: &str, v: Option<&'v str>) -> Result<&'v str, OptionError> {
        match v {
            Some(v) if !v.is_empty() => Ok(v),
            _ => err(format!("option {key} needs a value ({key}=...)")),
        }
    }
    let flag = |v: Option<&str>| match v {
        None => Ok(()),
        Some(_) => err(format!("option {key} takes no value")),
    };
    match key {
        "tls" => flag(value)?,
        "iam" => {
            flag(value)?;
            plan.iam = true;
        }
        "region" => *region = Some(need(key, value)?.to_string()),
        "az" => plan.az = Some(need(key, value)?.to_string()),
        "accesspoint" => {
            let ap = need(key, value)?;
            names::check_access_point(ap).map_err(|e| OptionError(format!("accesspoint: {e}")))?;
            plan.access_point = Some(ap.to_string());
        }
        "awsprofile" => plan.profile = Some(need(key, value)?.to_string()),
        "mounttargetip" => {
            let ip: std::net::IpAddr = need(key, value)?.parse().map_err(|_| {
                OptionError(format!(
                    "mounttargetip={}: not an IP address",
                    value.unwrap_or("")
                ))
            })?;
            plan.target = Some(std::net::SocketAddr::new(ip, 2049).to_string());
        }
        "target" => plan.target = Some(host_port(need(key, value)?)?),
        "cafile" => plan.ca_file = Some(need(key, value)?.to_string()),
        "tlsport" => plan.tls_port = Some(number(key, need(key, value)?, 1, 65535)? as u16),
        "readytimeout" => {
            plan.ready_timeout = Duration::from_secs(number(key, need(key, value)?, 1, 3600)?);
        }
        "port" => {
            return err(
                "option port= is set by the helper (the proxy's loopback port); tlsport= chooses it",
            );
        }
        "addr" | "proto" if !(key == "proto" && value == Some("tcp")) => {
            return err(format!(
                "option {key}= is set by the helper: the NFS client talks TCP to the proxy on \
                 127.0.0.1"
            ));
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn number(key: &str, text: &str, min: u64, max: u64) -> Result<u64, OptionError> {
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => err(format!(
            "option {key}={text}: expected a number from {min} to {max}"
        )),
    }
}

fn host_port(text: &str) -> Result<String, OptionError> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(text.to_string())
        }
        _ => err(format!(
            "option target={text}: expected HOST:PORT, e.g. target=nlb.example.com:2049"
        )),
    }
}

enum Class {
    Nfs,
    Userspace,
    Refused(String),
}

fn classify(key: &str, value: Option<&str>) -> Class {
    if let Some((_, why)) = UNSUPPORTED.iter().find(|(k, _)| *k == key) {
        return Class::Refused(format!(
            "option {key} is not supported by this helper: {why}"
        ));
    }
    if key.starts_with("x-") || key == "comment" || USERSPACE_FLAGS.contains(&key) {
        return Class::Userspace;
    }
    let known = match value {
        None => NFS_FLAGS.contains(&key),
        Some(_) => NFS_VALUES.contains(&key),
    };
    if known {
        Class::Nfs
    } else if NFS_FLAGS.contains(&key) || NFS_VALUES.contains(&key) {
        Class::Refused(match value {
            None => format!("option {key} needs a value ({key}=...)"),
            Some(_) => format!("option {key} takes no value"),
        })
    } else {
        Class::Refused(format!(
            "unknown option {key:?} (efs-utils options: tls, iam, accesspoint=, awsprofile=, \
             region=, az=, mounttargetip=, tlsport=; this helper's: target=, cafile=, \
             readytimeout=; and the NFS options of nfs(5))"
        ))
    }
}

/// The file system id, region, AZ and target together, as the proxy will derive them.
fn check_names(plan: &MountPlan) -> Result<(), OptionError> {
    let derived = names::mount_target_names(
        plan.kind.service(),
        &plan.fs_id,
        &plan.region,
        plan.az.as_deref(),
        None,
    )
    .map_err(|e| OptionError(e.to_string()))?;
    if plan.target.is_none() && derived.target().is_none() {
        return err(format!(
            "S3 Files mount targets are per availability zone: give az= (the AZ id, e.g. \
             az=use1-az1), mounttargetip= or target= to reach {}",
            derived.server_name
        ));
    }
    Ok(())
}

/// efs-utils' defaults, each replaced by a user option of its group, then the user's.
fn merge_nfs(kind: Kind, user: &[(String, Option<String>)]) -> Result<Vec<String>, OptionError> {
    for (key, value) in user {
        if matches!(key.as_str(), "nfsvers" | "vers") {
            match value.as_deref() {
                Some("4.1" | "4.2") => {}
                Some(v) => {
                    return err(format!(
                        "option {key}={v}: {} needs NFS 4.1 or 4.2",
                        kind.name()
                    ));
                }
                None => return err(format!("option {key} needs a value")),
            }
        }
    }
    let overridden = |default: &str| {
        let key = default.split('=').next().unwrap_or(default);
        let group: &[&str] = EXCLUSIVE
            .iter()
            .copied()
            .find(|g| g.contains(&key))
            .unwrap_or(std::slice::from_ref(&key));
        user.iter().any(|(k, _)| group.contains(&k.as_str()))
    };
    let mut out = Vec::new();
    if !user.iter().any(|(k, _)| k == "nfsvers" || k == "vers") {
        out.push(format!("nfsvers={}", kind.default_nfsvers()));
    }
    out.extend(
        DEFAULTS_AFTER_VERS
            .iter()
            .filter(|d| !overridden(d))
            .map(|d| d.to_string()),
    );
    out.extend(user.iter().map(|(k, v)| match v {
        Some(v) => format!("{k}={v}"),
        None => k.clone(),
    }));
    Ok(out)
}

impl MountPlan {
    /// The options of `mount -t nfs4` with the proxy's port.
    pub fn nfs_options(&self, port: u16) -> String {
        let mut all = self.nfs.clone();
        all.push(format!("port={port}"));
        all.join(",")
    }

    /// The NFS source: the proxy on loopback and the path.
    pub fn nfs_source(&self) -> String {
        format!("127.0.0.1:{}", self.path)
    }

    /// The target, TLS and IAM options of `efs-proxy run` / `efs-proxy check` for this mount
    /// (no secret: credentials come from the AWS chain at run time).
    pub fn proxy_args(&self) -> Vec<String> {
        let mut args = vec![
            "--fs-id".to_string(),
            self.fs_id.clone(),
            "--region".into(),
            self.region.clone(),
            "--service".into(),
            self.kind.name().into(),
        ];
        let mut opt = |flag: &str, value: &Option<String>| {
            if let Some(v) = value {
                args.push(flag.to_string());
                args.push(v.clone());
            }
        };
        opt("--az-id", &self.az);
        opt("--target", &self.target);
        opt("--ca-file", &self.ca_file);
        opt("--access-point", &self.access_point);
        opt("--profile", &self.profile);
        if !self.iam {
            args.push("--no-iam".into());
        }
        args
    }
}

#[path = "option_names.rs"]
mod names_table;

#[cfg(test)]
#[path = "options_tests.rs"]
mod tests;
