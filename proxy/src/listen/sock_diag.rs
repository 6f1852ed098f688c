//! The owner uid of one TCP socket, asked of the kernel by the socket's two addresses
//! (`NETLINK_SOCK_DIAG`, the interface `ss` uses).
//!
//! Why not `/proc/net/tcp`: the kernel prints every TCP socket of the host into that file, so
//! reading it on each accept costs time in proportion to all connections, TIME_WAIT ones
//! included (2 ms for 700 sockets here, the larger part of a new client's first call). An
//! exact sock_diag lookup costs two system calls whatever the host holds. The netlink crates
//! (rust-netlink) do the encoding; this module only builds the one request and reads the one
//! answer.

use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};

/// "Any socket with these addresses": no cookie to match.
const NO_COOKIE: [u8; 8] = [0xff; 8];

/// The uid owning the TCP socket whose local address is `local` and remote address `remote`;
/// `None` when the kernel has no such socket or cannot answer (then the caller falls back to
/// `/proc/net/tcp`).
pub(crate) fn owner(local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    let (local, remote) = (unmapped(local), unmapped(remote));
    let family = match (local.ip(), remote.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => AF_INET,
        (IpAddr::V6(_), IpAddr::V6(_)) => AF_INET6,
        _ => return None,
    };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id: SocketId {
                source_port: local.port(),
                destination_port: remote.port(),
                source_address: local.ip(),
                destination_address: remote.ip(),
                interface_id: 0,
                cookie: NO_COOKIE,
            },
        })
        .into(),
    );
    request.finalize();
    // `serialize` needs a buffer of exactly `buffer_len()` bytes.
    let mut bytes = vec![0; request.buffer_len()];
    request.serialize(&mut bytes);

    let mut socket = Socket::new(NETLINK_SOCK_DIAG).ok()?;
    socket.bind_auto().ok()?;
    socket.connect(&NetlinkAddr::new(0, 0)).ok()?;
    socket.send(&bytes, 0).ok()?;
    // One answer: the socket's description (a few hundred bytes) or an error.
    let mut answer = Vec::with_capacity(8192);
    let len = socket.recv(&mut answer, 0).ok()?;
    let reply = NetlinkMessage::<SockDiagMessage>::deserialize(answer.get(..len)?).ok()?;
    match reply.payload {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response))
            if response.header.socket_id.source_port == local.port()
                && response.header.socket_id.destination_port == remote.port() =>
        {
            Some(response.header.uid)
        }
        _ => None,
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address the kernel files the socket under.
fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(addr, |v4| SocketAddr::new(IpAddr::V4(v4), addr.port())),
        IpAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listen::peer::effective_uid;

    #[test]
    fn the_owner_of_a_connected_socket_is_found_by_its_addresses() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server_side = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(server_side).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        // The client's socket: local = the peer the listener saw, remote = the listener.
        assert_eq!(owner(peer, server_side), Some(effective_uid()));
        let mapped = SocketAddr::new(
            IpAddr::V6(match peer.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            }),
            peer.port(),
        );
        assert_eq!(owner(mapped, server_side), Some(effective_uid()));
        drop(client);
    }

    #[test]
    fn no_socket_no_owner() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(owner(nobody, listener.local_addr().unwrap()), None);
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(
            owner(v6, listener.local_addr().unwrap()),
            None,
            "mixed families"
        );
    }
}
