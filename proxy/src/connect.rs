//! The connect layer: DNS, TCP and TLS to the mount target.
//!
//! The address dialled (`target`, e.g. the NLB) and the name verified (`server_name`, the mount
//! target's) are separate on purpose; see [`crate::tls`].

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::{ConnectError, tls_hint};
use crate::tls::TlsConfigHandle;

/// How the server leg is secured.
#[derive(Clone)]
pub enum Security {
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
pub struct Dialer {
    /// `host:port` to connect to, resolved at every connect (DNS may change).
    pub target: String,
    pub security: Security,
    /// Limit for the TCP connect of one address, and for the TLS handshake.
    pub connect_timeout: Duration,
}

/// A connection to the mount target.
pub enum ServerStream {
    Tls(Box<TlsStream<TcpStream>>),
    Plain(TcpStream),
}

impl ServerStream {
    /// The negotiated TLS version and cipher suite, for logs.
    pub fn tls_summary(&self) -> Option<String> {
        match self {
            ServerStream::Tls(tls) => {
                let (_, conn) = tls.get_ref();
                Some(format!(
                    "{:?} {:?}",
                    conn.protocol_version()?,
                    conn.negotiated_cipher_suite()?.suite()
                ))
            }
            ServerStream::Plain(_) => None,
        }
    }
}

impl Dialer {
    /// Resolves the target, connects over TCP (trying each address in turn), then performs
    /// the TLS handshake. Every failure names its layer and the likely fix.
    pub async fn connect(&self) -> Result<(ServerStream, SocketAddr), ConnectError> {
        let tcp = self.connect_tcp().await?;
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
                let handshake = connector.connect(server_name.clone(), tcp);
                let name = server_name.to_str().into_owned();
                match timeout(self.connect_timeout, handshake).await {
                    Ok(Ok(tls)) => Ok((ServerStream::Tls(Box::new(tls)), addr)),
                    Ok(Err(err)) => {
                        let (reason, hint) = tls_hint(&err);
                        Err(ConnectError::Tls {
                            server_name: name,
                            addr,
                            reason,
                            hint,
                        })
                    }
                    Err(_) => Err(ConnectError::TlsTimeout {
                        server_name: name,
                        addr,
                        timeout: self.connect_timeout,
                    }),
                }
            }
        }
    }

    async fn connect_tcp(&self) -> Result<TcpStream, ConnectError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&self.target)
            .await
            .map_err(|source| ConnectError::Resolve {
                target: self.target.clone(),
                source,
            })?
            .collect();
        if addrs.is_empty() {
            return Err(ConnectError::NoAddresses {
                target: self.target.clone(),
            });
        }
        let mut failures = Vec::new();
        let mut timed_out = 0;
        for addr in &addrs {
            match timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    // NFS records are latency-sensitive and already batched by the client.
                    stream.set_nodelay(true).ok();
                    return Ok(stream);
                }
                Ok(Err(e)) => failures.push(format!("{addr}: {e}")),
                Err(_) => {
                    timed_out += 1;
                    failures.push(format!("{addr}: timed out"));
                }
            }
        }
        if timed_out == addrs.len() {
            return Err(ConnectError::TcpTimeout {
                target: self.target.clone(),
                timeout: self.connect_timeout,
            });
        }
        Err(ConnectError::Tcp {
            target: self.target.clone(),
            attempts: failures.join("; "),
        })
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            ServerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            ServerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            ServerStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerStream::Tls(s) => s.is_write_vectored(),
            ServerStream::Plain(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            ServerStream::Plain(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            ServerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Shares the dialer between connection tasks.
pub type SharedDialer = Arc<Dialer>;
