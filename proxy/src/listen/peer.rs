//! Who may use this host's IAM identity: the owner uid of a connecting loopback socket.
//!
//! Every client connection gets an NFS session signed with this host's credentials, so any
//! local user with a user-space NFS client could act as any AUTH_SYS uid. On Linux the kernel
//! knows the owner of the client's socket: asked by the socket's addresses (sock_diag, see
//! `sock_diag.rs`), or, where that is not available, listed in `/proc/net/tcp` and
//! `/proc/net/tcp6` (the line whose local address is the peer's and whose remote address is
//! the listener's). By default only uid 0 (the kernel NFS client) and the proxy's own uid are
//! served.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Which local users may connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UidPolicy {
    /// Anyone (AWS's proxy; the drop-in default).
    Any,
    /// These uids; uid 0 and the proxy's own uid are added by [`UidPolicy::allows`].
    Only(Vec<u32>),
}

impl Default for UidPolicy {
    /// Root (the kernel NFS client) and the proxy's own user.
    fn default() -> Self {
        UidPolicy::Only(Vec::new())
    }
}

impl UidPolicy {
    /// Parses `--allow-uid`: `any`, or a comma-separated list of numeric uids.
    pub fn parse(text: &str) -> Result<UidPolicy, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("any") {
            return Ok(UidPolicy::Any);
        }
        text.split(',')
            .map(|uid| {
                uid.trim().parse::<u32>().map_err(|_| {
                    format!(
                        "`{uid}` is not a uid: expected `any` or numeric uids separated by \
                         commas, e.g. 0,1000"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(UidPolicy::Only)
    }

    /// True if `uid` may connect.
    pub fn allows(&self, uid: u32) -> bool {
        match self {
            UidPolicy::Any => true,
            UidPolicy::Only(list) => uid == 0 || uid == effective_uid() || list.contains(&uid),
        }
    }

    /// The allowed users, for a log line.
    pub fn describe(&self) -> String {
        match self {
            UidPolicy::Any => "any user".into(),
            UidPolicy::Only(list) => {
                let mut uids = vec![0, effective_uid()];
                uids.extend(list);
                uids.sort_unstable();
                uids.dedup();
                let uids: Vec<String> = uids.iter().map(u32::to_string).collect();
                format!("uids {}", uids.join(", "))
            }
        }
    }
}

pub(crate) fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The owner uid of the socket at `peer` connected to `local` (both on this host), if the
/// kernel knows it; `None` off Linux or when the socket is already gone.
pub(crate) fn socket_owner(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    super::sock_diag::owner(peer, local).or_else(|| proc_net_tcp_owner(peer, local))
}

/// [`socket_owner`] from the text tables, read whole: for kernels without sock_diag.
fn proc_net_tcp_owner(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|path| {
        let table = std::fs::read_to_string(path).ok()?;
        owner_in_table(&table, peer, local)
    })
}

/// Finds the line of `/proc/net/tcp{,6}` text whose local address is `peer` and remote
/// address is `local`, and returns its uid column.
pub(crate) fn owner_in_table(table: &str, peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_slot, here, there) = (fields.next()?, fields.next()?, fields.next()?);
        let uid = fields.nth(4)?;
        (same(parse_endpoint(here)?, peer) && same(parse_endpoint(there)?, local))
            .then(|| uid.parse().ok())
            .flatten()
    })
}

/// Equal addresses, an IPv4-mapped IPv6 address equal to its IPv4 form.
fn same(a: SocketAddr, b: SocketAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && canonical(a.ip()) == canonical(b.ip())
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): each 32-bit word is the
/// network-order address bytes printed as a native-endian integer.
fn parse_endpoint(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for word in 0..addr.len() / 8 {
        let value = u32::from_str_radix(addr.get(word * 8..word * 8 + 8)?, 16).ok()?;
        bytes.extend(value.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_always_allow_root_and_self() {
        assert_eq!(UidPolicy::parse("any"), Ok(UidPolicy::Any));
        assert_eq!(
            UidPolicy::parse("1000, 1001"),
            Ok(UidPolicy::Only(vec![1000, 1001]))
        );
        let err = UidPolicy::parse("1000,bob").unwrap_err();
        assert!(err.contains("`bob` is not a uid"), "{err}");
        let default = UidPolicy::default();
        assert!(default.allows(0) && default.allows(effective_uid()));
        assert!(!default.allows(65534) || effective_uid() == 65534);
        assert!(UidPolicy::Only(vec![65534]).allows(65534));
    }

    #[test]
    fn the_owner_is_found_by_both_endpoints_in_either_table() {
        // Native-endian words, as the kernel prints them on this host.
        let v4 = |ip: [u8; 4], port: u16| format!("{:08X}:{port:04X}", u32::from_ne_bytes(ip));
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             0: {} {} 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0\n\
             1: {} {} 01 00000000:00000000 00:00000000 00000000 65534        0 2 1 0\n",
            v4([127, 0, 0, 1], 20049),
            v4([0, 0, 0, 0], 0),
            v4([127, 0, 0, 1], 40000),
            v4([127, 0, 0, 1], 20049),
        );
        let proxy: SocketAddr = "127.0.0.1:20049".parse().unwrap();
        let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert_eq!(owner_in_table(&table, client, proxy), Some(65534));
        assert_eq!(owner_in_table(&table, proxy, client), None);
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().unwrap();
        assert_eq!(owner_in_table(&table, mapped, proxy), Some(65534));
        assert_eq!(owner_in_table("garbage\nx y z", client, proxy), None);
    }

    #[test]
    fn this_processs_own_connection_is_found_in_proc() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let local = listener.local_addr().unwrap();
        assert_eq!(socket_owner(peer, local), Some(effective_uid()));
        assert_eq!(proc_net_tcp_owner(peer, local), Some(effective_uid()));
    }
}
