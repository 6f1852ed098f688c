//! Mount target names, derived as efs-utils derives them from a file system id and region.
//!
//! * S3 Files: `{az_id}.{fs_id}.s3files.{region}.{suffix}` (`dist/s3files-utils.conf`); the
//!   AZ ID (e.g. `use1-az1`) is mandatory: mount targets are per availability zone.
//! * EFS: `{fs_id}.efs.{region}.{suffix}`, or `{az}.{fs_id}.efs.{region}.{suffix}` with an
//!   AZ (efs-utils' `-o az=` or, cross-account, the AZ ID).
//!
//! The TLS server name (SNI and certificate check, efs-utils' `checkHost`) is the DNS name
//! from the file system id on: `dns_name[dns_name.index(fs_id):]`, i.e. without the AZ prefix.
//!
//! Suffixes by partition (efs-utils' per-region config sections): `amazonaws.com` (EFS) and
//! `on.aws` (S3 Files) by default; China `amazonaws.com.cn` / `on.amazonwebservices.com.cn`;
//! the isolated partitions use their partition's domain for both services.

use thiserror::Error;

use super::Service;

/// The NFS port of every mount target.
pub const NFS_PORT: u16 = 2049;

/// A name that cannot be derived, and what to pass instead.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    /// Not a file system id (`fs-` and 8 to 40 lower-case hex digits).
    #[error(
        "invalid file system id {0:?}: expected fs- followed by 8 to 40 lower-case hex digits, \
         e.g. fs-0123456789abcdef0"
    )]
    FsId(String),
    /// Not an AWS region name.
    #[error("invalid region {0:?}: expected a region name such as us-east-1")]
    Region(String),
    /// Not an access point id (`fsap-` and 8 to 40 lower-case hex digits).
    #[error(
        "invalid access point id {0:?}: expected fsap- followed by 8 to 40 lower-case hex \
         digits"
    )]
    AccessPoint(String),
    /// Neither an availability zone ID (`use1-az1`) nor an AZ name (`us-east-1a`).
    #[error(
        "invalid availability zone {0:?}: expected an AZ ID such as use1-az1 or a name such as us-east-1a"
    )]
    Az(String),
}

/// The names of one mount target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountTargetNames {
    /// The DNS name to connect to (port 2049), when it can be derived: S3 Files needs the AZ.
    pub dns_name: Option<String>,
    /// SNI and the name the server certificate must carry.
    pub server_name: String,
}

impl MountTargetNames {
    /// `dns_name:2049`.
    pub fn target(&self) -> Option<String> {
        self.dns_name.as_ref().map(|n| format!("{n}:{NFS_PORT}"))
    }
}

/// The DNS suffix of `service` in `region`.
pub fn dns_suffix(service: Service, region: &str) -> &'static str {
    let partition = [
        ("cn-", "amazonaws.com.cn"),
        ("us-isob-", "sc2s.sgov.gov"),
        ("us-isof-", "csp.hci.ic.gov"),
        ("us-iso-", "c2s.ic.gov"),
        ("eu-isoe-", "cloud.adc-e.uk"),
        ("eusc-", "amazonaws.eu"),
    ]
    .into_iter()
    .find(|(prefix, _)| region.starts_with(prefix));
    match (service, partition) {
        (Service::S3Files, Some(("cn-", _))) => "on.amazonwebservices.com.cn",
        (_, Some((_, suffix))) => suffix,
        (Service::S3Files, None) => "on.aws",
        (Service::Efs, None) => "amazonaws.com",
    }
}

/// Derives the mount target's names. `suffix` overrides the partition's DNS suffix.
pub fn mount_target_names(
    service: Service,
    fs_id: &str,
    region: &str,
    az: Option<&str>,
    suffix: Option<&str>,
) -> Result<MountTargetNames, NameError> {
    check_fs_id(fs_id)?;
    check_region(region)?;
    if let Some(az) = az {
        check_az(az)?;
    }
    let suffix = suffix.unwrap_or_else(|| dns_suffix(service, region));
    let server_name = format!("{fs_id}.{}.{region}.{suffix}", service.dns_label());
    let dns_name = match (service, az) {
        (_, Some(az)) => Some(format!("{az}.{server_name}")),
        (Service::S3Files, None) => None,
        (Service::Efs, None) => Some(server_name.clone()),
    };
    Ok(MountTargetNames {
        dns_name,
        server_name,
    })
}

/// A mount target name taken apart, the inverse of [`mount_target_names`]:
/// `[az.]fs-….(efs|s3files).REGION.SUFFIX`, or a wildcard such as
/// `*.efs.us-east-1.amazonaws.com` (no file system id). What a server certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountTargetName {
    /// The file system id; `None` for a wildcard name.
    pub fs_id: Option<String>,
    /// EFS or S3 Files, from the `efs` or `s3files` label.
    pub service: Service,
    /// The region label.
    pub region: String,
}

impl std::fmt::Display for MountTargetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.fs_id {
            Some(fs) => write!(f, "{fs} ({}, {})", self.service.dns_label(), self.region),
            None => write!(f, "{} in {}", self.service.dns_label(), self.region),
        }
    }
}

/// Parses a mount target's DNS name or server name; `None` for other names.
pub fn parse_mount_target_name(name: &str) -> Option<MountTargetName> {
    let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
    // The service label needs a region after it and a suffix after that.
    for i in 0..labels.len().saturating_sub(2) {
        let service = match labels[i] {
            "efs" => Service::Efs,
            "s3files" => Service::S3Files,
            _ => continue,
        };
        let region = labels[i + 1];
        if check_region(region).is_err() {
            continue;
        }
        let fs_id = i
            .checked_sub(1)
            .map(|j| labels[j])
            .filter(|l| check_fs_id(l).is_ok())
            .map(str::to_string);
        return Some(MountTargetName {
            fs_id,
            service,
            region: region.to_string(),
        });
    }
    None
}

fn is_hex_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|hex| {
        (8..=40).contains(&hex.len())
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// `fs-` and 8 to 40 lower-case hex digits.
pub fn check_fs_id(fs_id: &str) -> Result<(), NameError> {
    if is_hex_id(fs_id, "fs-") {
        Ok(())
    } else {
        Err(NameError::FsId(fs_id.to_string()))
    }
}

/// `fsap-` and 8 to 40 lower-case hex digits.
pub fn check_access_point(id: &str) -> Result<(), NameError> {
    if is_hex_id(id, "fsap-") {
        Ok(())
    } else {
        Err(NameError::AccessPoint(id.to_string()))
    }
}

/// Lower-case words and a trailing number, dash-separated: `us-east-1`, `us-isob-east-1`.
pub fn check_region(region: &str) -> Result<(), NameError> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && parts[..parts.len() - 1]
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()));
    if ok {
        Ok(())
    } else {
        Err(NameError::Region(region.to_string()))
    }
}

/// One DNS label of lower-case letters, digits and dashes.
fn check_az(az: &str) -> Result<(), NameError> {
    let ok = !az.is_empty()
        && az.len() <= 63
        && !az.starts_with('-')
        && !az.ends_with('-')
        && az
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(NameError::Az(az.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FS: &str = "fs-0123456789abcdef0";

    #[test]
    fn s3files_names_of_the_spec_example() {
        let n =
            mount_target_names(Service::S3Files, FS, "us-east-1", Some("use1-az1"), None).unwrap();
        assert_eq!(
            n.target().as_deref(),
            Some("use1-az1.fs-0123456789abcdef0.s3files.us-east-1.on.aws:2049")
        );
        assert_eq!(
            n.server_name,
            "fs-0123456789abcdef0.s3files.us-east-1.on.aws"
        );
    }

    #[test]
    fn s3files_without_az_has_a_server_name_only() {
        let n = mount_target_names(Service::S3Files, FS, "us-east-1", None, None).unwrap();
        assert_eq!(n.dns_name, None);
        assert_eq!(
            n.server_name,
            "fs-0123456789abcdef0.s3files.us-east-1.on.aws"
        );
    }

    #[test]
    fn efs_names_with_and_without_az() {
        let n = mount_target_names(Service::Efs, FS, "eu-west-2", None, None).unwrap();
        assert_eq!(
            n.target().as_deref(),
            Some("fs-0123456789abcdef0.efs.eu-west-2.amazonaws.com:2049")
        );
        assert_eq!(
            n.server_name,
            "fs-0123456789abcdef0.efs.eu-west-2.amazonaws.com"
        );
        let az =
            mount_target_names(Service::Efs, FS, "eu-west-2", Some("eu-west-2a"), None).unwrap();
        assert_eq!(
            az.dns_name.as_deref(),
            Some("eu-west-2a.fs-0123456789abcdef0.efs.eu-west-2.amazonaws.com")
        );
        assert_eq!(az.server_name, n.server_name);
    }

    #[test]
    fn partition_suffixes() {
        let cases = [
            (Service::Efs, "cn-north-1", "amazonaws.com.cn"),
            (Service::Efs, "cn-northwest-1", "amazonaws.com.cn"),
            (
                Service::S3Files,
                "cn-north-1",
                "on.amazonwebservices.com.cn",
            ),
            (
                Service::S3Files,
                "cn-northwest-1",
                "on.amazonwebservices.com.cn",
            ),
            (Service::Efs, "us-iso-east-1", "c2s.ic.gov"),
            (Service::S3Files, "us-iso-west-1", "c2s.ic.gov"),
            (Service::Efs, "us-isob-east-1", "sc2s.sgov.gov"),
            (Service::S3Files, "us-isof-south-1", "csp.hci.ic.gov"),
            (Service::S3Files, "eu-isoe-west-1", "cloud.adc-e.uk"),
            (Service::S3Files, "eusc-de-east-1", "amazonaws.eu"),
            (Service::Efs, "us-gov-west-1", "amazonaws.com"),
            (Service::S3Files, "ap-southeast-2", "on.aws"),
        ];
        for (service, region, suffix) in cases {
            assert_eq!(dns_suffix(service, region), suffix, "{service} {region}");
        }
        let n =
            mount_target_names(Service::Efs, FS, "us-east-1", None, Some("example.test")).unwrap();
        assert_eq!(
            n.server_name,
            "fs-0123456789abcdef0.efs.us-east-1.example.test"
        );
    }

    #[test]
    fn mount_target_names_are_taken_apart() {
        let n = parse_mount_target_name("use1-az1.fs-0123456789abcdef0.s3files.us-east-1.on.aws")
            .unwrap();
        assert_eq!(n.fs_id.as_deref(), Some("fs-0123456789abcdef0"));
        assert_eq!(n.service, Service::S3Files);
        assert_eq!(n.region, "us-east-1");
        let n = parse_mount_target_name("*.efs.eu-west-3.amazonaws.com").unwrap();
        assert_eq!((n.fs_id, n.region.as_str()), (None, "eu-west-3"));
        assert!(parse_mount_target_name("nlb-123.elb.us-east-1.amazonaws.com").is_none());
        assert!(parse_mount_target_name("localhost").is_none());
        assert!(parse_mount_target_name("efs.us-east-1").is_none());
    }

    #[test]
    fn bad_ids_are_refused_with_an_example() {
        for bad in [
            "fs-XYZ",
            "fs-0123",
            "0123456789abcdef0",
            "fs-0123456789ABCDEF0",
            "",
        ] {
            let err = mount_target_names(Service::Efs, bad, "us-east-1", None, None).unwrap_err();
            assert!(err.to_string().contains("fs-0123456789abcdef0"), "{err}");
        }
        for bad in ["useast1", "us-east", "US-EAST-1", "us--1", "us-east-1 "] {
            assert_eq!(check_region(bad), Err(NameError::Region(bad.into())));
        }
        assert!(check_access_point("fsap-0123456789abcdef0").is_ok());
        assert!(check_access_point("fs-0123456789abcdef0").is_err());
        assert!(mount_target_names(Service::S3Files, FS, "us-east-1", Some("a.b"), None).is_err());
    }
}
