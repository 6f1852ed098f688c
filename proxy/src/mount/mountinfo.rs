//! The mount table (`/proc/self/mountinfo`): is the NFS mount a proxy serves still there?
//!
//! A proxy's mount is the NFS mount of `127.0.0.1:…` whose options name the proxy's port
//! (`port=P`, which the kernel shows for every non-default port). The port is unique per
//! proxy, so this needs no path matching; a mount point with spaces (`\040` in the table) or
//! a bind mount of the NFS mount elsewhere changes nothing.

/// One line of mountinfo: the fields the watch needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// Field 5: where it is mounted, unescaped.
    pub mount_point: String,
    /// The file system type after the ` - ` separator (`nfs4` for an NFSv4 mount).
    pub fs_type: String,
    /// The mount source, unescaped (`127.0.0.1:/` for a mount through a proxy).
    pub source: String,
    /// The superblock options (for NFS: `vers=…,addr=…,port=…`).
    pub super_options: String,
}

/// Undoes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` `\`).
pub fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let v = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one line (`None` for a malformed one).
pub fn parse_line(line: &str) -> Option<MountEntry> {
    let (before, after) = line.split_once(" - ")?;
    let mount_point = before.split(' ').nth(4)?;
    let mut rest = after.split(' ');
    let fs_type = rest.next()?;
    let source = rest.next()?;
    let super_options = rest.next().unwrap_or("");
    Some(MountEntry {
        mount_point: unescape(mount_point),
        fs_type: fs_type.to_string(),
        source: unescape(source),
        super_options: super_options.to_string(),
    })
}

/// Every well-formed entry of a mountinfo text.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

impl MountEntry {
    /// Whether this is the NFS mount through the proxy on `port`.
    pub fn is_proxy_mount(&self, port: u16) -> bool {
        let wanted = format!("port={port}");
        self.fs_type.starts_with("nfs")
            && self.source.starts_with("127.0.0.1:")
            && self.super_options.split(',').any(|o| o == wanted)
    }
}

/// Whether the mount table holds the NFS mount through the proxy on `port`.
pub fn has_proxy_mount(text: &str, port: u16) -> bool {
    parse(text).iter().any(|e| e.is_proxy_mount(port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
98 22 0:52 / /mnt/my\\040data rw,relatime shared:50 - nfs4 127.0.0.1:/ rw,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,noresvport,proto=tcp,port=20123,timeo=600,retrans=2,sec=sys,clientaddr=127.0.0.1,local_lock=none,addr=127.0.0.1
99 22 0:53 / /mnt/other rw - nfs4 10.0.0.5:/ rw,vers=4.1,port=20124
garbage line
";

    #[test]
    fn the_proxy_mount_is_found_by_its_port() {
        assert!(has_proxy_mount(TABLE, 20123));
        assert!(!has_proxy_mount(TABLE, 2012));
        // Not through a loopback proxy.
        assert!(!has_proxy_mount(TABLE, 20124));
        assert!(!has_proxy_mount("", 20123));
    }

    #[test]
    fn escaped_mount_points_are_decoded() {
        let entries = parse(TABLE);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1].mount_point, "/mnt/my data");
        assert_eq!(unescape("a\\134b\\012"), "a\\b\n");
        assert_eq!(unescape("\\04"), "\\04");
    }
}
