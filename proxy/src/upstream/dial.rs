//! The connect layer: DNS, TCP and TLS to the mount target.
//!
//! The address dialled (`target`, e.g. the NLB) and the name verified (`server_name`, the mount
//! target's) are separate on purpose; see [`crate::upstream::tls`].

use std::net::SocketAddr;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use tokio_rustls::TlsConnector;

use crate::error::{ConnectError, next_step};
use crate::io::ServerStream;
use crate::io::readahead::ReadAhead;
use crate::upstream::tls::TlsConfigHandle;

/// How the server leg is secured.
#[derive(Clone)]
pub(crate) enum Security {
    /// TLS with the current configuration and this server name (SNI and verification).
    Tls {
        config: TlsConfigHandle,
        server_name: ServerName<'static>,
    },
    /// Plain TCP (efs-utils' non-TLS EFS mounts).
    Plaintext,
}

/// Dials the mount target: everything needed to open one server connection.
#[derive(Clone)]
pub(crate) struct Dialer {
    /// `host:port` to connect to, resolved at every connect (DNS may change).
    pub target: String,
    pub security: Security,
    /// Limit for the TCP connect of one address, and for the TLS handshake.
    pub connect_timeout: Duration,
    /// TCP keepalive and user timeout on server sockets (`None`: the kernel's defaults).
    pub keepalive: Option<Keepalive>,
}

impl Dialer {
    /// Resolves the target, connects over TCP (trying each address in turn), then performs
    /// the TLS handshake. Every failure names its layer and the likely fix.
    pub(crate) async fn connect(&self) -> Result<(ServerStream, SocketAddr), ConnectError> {
        self.connect_by(None).await
    }

    /// [`connect`](Self::connect), with every step also ending by `deadline` (drop-in mode
    /// gives DNS, TCP, TLS and bind one deadline, as efs-proxy).
    pub(crate) async fn connect_by(
        &self,
        deadline: Option<Instant>,
    ) -> Result<(ServerStream, SocketAddr), ConnectError> {
        let tcp = self.connect_tcp(deadline).await?;
        let handshake_limit = limit_by(self.connect_timeout, deadline);
        let addr = tcp.peer_addr().map_err(|e| ConnectError::Tcp {
            target: self.target.clone(),
            attempts: e.to_string(),
        })?;
        match &self.security {
            Security::Plaintext => Ok((ServerStream::Plain(tcp), addr)),
            Security::Tls {
                config,
                server_name,
            } => {
                let connector = TlsConnector::from(config.current());
                let handshake = connector.connect(server_name.clone(), ReadAhead::new(tcp));
                let name = server_name.to_str().into_owned();
                match timeout(handshake_limit, handshake).await {
                    Ok(Ok(tls)) => Ok((ServerStream::Tls(Box::new(tls)), addr)),
                    Ok(Err(err)) => Err(ConnectError::Tls {
                        server_name: name,
                        addr,
                        hint: next_step(&err),
                        source: err,
                    }),
                    Err(_) => Err(ConnectError::TlsTimeout {
                        server_name: name,
                        addr,
                        timeout: handshake_limit,
                    }),
                }
            }
        }
    }

    /// Resolves the target and connects to its addresses with staggered attempts (RFC 8305
    /// "happy eyeballs"): IPv6 and IPv4 interleaved, a new attempt every
    /// [`ATTEMPT_DELAY`] or as soon as one fails, the first connection wins. A dead address
    /// family (the dual-stack hang of efs-utils#271) costs one delay, not a timeout.
    async fn connect_tcp(&self, deadline: Option<Instant>) -> Result<TcpStream, ConnectError> {
        let addrs = self
            .resolve(limit_by(self.connect_timeout, deadline))
            .await?;
        if addrs.is_empty() {
            return Err(ConnectError::NoAddresses {
                target: self.target.clone(),
            });
        }
        let total = addrs.len();
        let mut waiting = interleave_families(addrs).into_iter();
        let mut attempts = JoinSet::new();
        let mut failures = Vec::new();
        let mut timed_out = 0;
        let limit = limit_by(self.connect_timeout, deadline);
        let start = |attempts: &mut JoinSet<_>, addr: SocketAddr| {
            attempts.spawn(async move { (addr, timeout(limit, TcpStream::connect(addr)).await) });
        };
        if let Some(addr) = waiting.next() {
            start(&mut attempts, addr);
        }
        let mut next_start = Instant::now() + ATTEMPT_DELAY;
        loop {
            tokio::select! {
                joined = attempts.join_next() => match joined {
                    None => {
                        // Every attempt so far failed: start the next address now.
                        match waiting.next() {
                            Some(addr) => start(&mut attempts, addr),
                            None => break,
                        }
                    }
                    Some(Ok((_, Ok(Ok(stream))))) => {
                        configure_socket(&stream, self.keepalive);
                        return Ok(stream);
                    }
                    Some(Ok((addr, Ok(Err(e))))) => {
                        failures.push(format!("{addr}: {e}"));
                        if let Some(addr) = waiting.next() {
                            start(&mut attempts, addr);
                            next_start = Instant::now() + ATTEMPT_DELAY;
                        }
                    }
                    Some(Ok((addr, Err(_)))) => {
                        timed_out += 1;
                        failures.push(format!("{addr}: timed out after {limit:?}"));
                    }
                    Some(Err(e)) => failures.push(format!("connect task failed: {e}")),
                },
                _ = tokio::time::sleep_until(next_start), if waiting.len() > 0 => {
                    if let Some(addr) = waiting.next() {
                        start(&mut attempts, addr);
                    }
                    next_start = Instant::now() + ATTEMPT_DELAY;
                }
            }
        }
        if timed_out == total {
            return Err(ConnectError::TcpTimeout {
                target: self.target.clone(),
                timeout: limit,
            });
        }
        Err(ConnectError::Tcp {
            target: self.target.clone(),
            attempts: failures.join("; "),
        })
    }

    /// The target's addresses. The system resolver has no timeout of its own that this
    /// process controls (a dead nameserver costs glibc's 5 s × attempts × servers), so the
    /// lookup is bounded by `limit`; a lookup still running in its blocking thread then
    /// finishes in the background.
    async fn resolve(&self, limit: Duration) -> Result<Vec<SocketAddr>, ConnectError> {
        match timeout(limit, tokio::net::lookup_host(&self.target)).await {
            Ok(Ok(addrs)) => Ok(addrs.collect()),
            Ok(Err(source)) => Err(ConnectError::Resolve {
                target: self.target.clone(),
                source,
            }),
            Err(_) => Err(ConnectError::ResolveTimeout {
                target: self.target.clone(),
                timeout: limit,
            }),
        }
    }
}

/// `limit`, shortened to what is left until `deadline`.
pub(crate) fn limit_by(limit: Duration, deadline: Option<Instant>) -> Duration {
    match deadline {
        Some(deadline) => limit.min(deadline.saturating_duration_since(Instant::now())),
        None => limit,
    }
}

/// The host part of `host:port` or `[v6]:port` (for a default server name).
pub(crate) fn host_of(target: &str) -> &str {
    let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Delay between staggered connection attempts (RFC 8305 §5 recommends 250 ms).
pub(crate) const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Orders addresses as RFC 8305 §4 asks: the first family first (resolver order), then
/// alternating families.
pub(crate) fn interleave_families(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let first_is_v6 = addrs.first().is_some_and(SocketAddr::is_ipv6);
    let (mut a, mut b): (Vec<_>, Vec<_>) = addrs
        .into_iter()
        .partition(|addr| addr.is_ipv6() == first_is_v6);
    a.reverse();
    b.reverse();
    let mut out = Vec::with_capacity(a.len() + b.len());
    while !a.is_empty() || !b.is_empty() {
        out.extend(a.pop());
        out.extend(b.pop());
    }
    out
}

/// TCP settings of a server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first keepalive probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is declared dead.
    pub probes: u32,
    /// How long sent data may stay unacknowledged (`TCP_USER_TIMEOUT`).
    pub user_timeout: Duration,
}

impl Default for Keepalive {
    /// A silent server is noticed within about a minute either way: 30 s idle + 3 × 10 s
    /// probes when idle, 60 s of unacknowledged data when busy.
    fn default() -> Self {
        Keepalive {
            idle: Duration::from_secs(30),
            interval: Duration::from_secs(10),
            probes: 3,
            user_timeout: Duration::from_secs(60),
        }
    }
}

/// No Nagle delay, and keepalive so a half-open connection (the CLOSE-WAIT hangs of
/// efs-utils#374) is found and closed by the kernel.
fn configure_socket(stream: &TcpStream, keepalive: Option<Keepalive>) {
    // NFS records are latency-sensitive and already batched by the client.
    let _ = stream.set_nodelay(true);
    let Some(k) = keepalive else {
        return;
    };
    let socket = socket2::SockRef::from(stream);
    let params = socket2::TcpKeepalive::new()
        .with_time(k.idle)
        .with_interval(k.interval)
        .with_retries(k.probes);
    if let Err(e) = socket.set_tcp_keepalive(&params) {
        tracing::debug!("cannot enable TCP keepalive: {e}");
    }
    if let Err(e) = socket.set_tcp_user_timeout(Some(k.user_timeout)) {
        tracing::debug!("cannot set TCP_USER_TIMEOUT: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_the_port() {
        assert_eq!(
            host_of("fs-1.efs.us-east-1.amazonaws.com:2049"),
            "fs-1.efs.us-east-1.amazonaws.com"
        );
        assert_eq!(host_of("[::1]:2049"), "::1");
        assert_eq!(host_of("10.0.0.1:2049"), "10.0.0.1");
    }

    #[test]
    fn families_alternate_starting_with_the_resolvers_first() {
        let v4 = |n: u8| SocketAddr::from(([192, 0, 2, n], 2049));
        let v6 = |n: u16| SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, n], 2049));
        let order = interleave_families(vec![v6(1), v6(2), v6(3), v4(1), v4(2)]);
        assert_eq!(order, vec![v6(1), v4(1), v6(2), v4(2), v6(3)]);
        let order = interleave_families(vec![v4(1), v6(1), v4(2)]);
        assert_eq!(order, vec![v4(1), v6(1), v4(2)]);
        assert!(interleave_families(vec![]).is_empty());
    }
}
