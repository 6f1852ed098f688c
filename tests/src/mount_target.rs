//! A fake EFS / S3 Files mount target: a TLS server that requires a client certificate,
//! answers `bind_client_to_partition` as configured, then serves NFS records from a backend
//! (an in-process RPC responder, or a real NFS server such as nfs-ganesha).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use efs_rpc::awsfile::{self, BindClientResponse, BindResponse, PartitionId, ProxyIdentifier};
use efs_rpc::{AcceptStat, Record, RecordCodec, ReplyHeader, RpcMessage};
use futures_util::{SinkExt, StreamExt};
use rustls::DigitallySignedStruct;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DistinguishedName, ServerConfig, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::{Framed, FramedParts};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::iam_verify::IamVerifier;
use crate::responder::{Responder, respond_record};
use efs_proxy::internal::upstream::HandshakeSignatures;

/// How the fake mount target answers `bind_client_to_partition`.
#[derive(Debug, Clone)]
pub enum BindBehaviour {
    /// A decoded reply of the given content (READY, RETRY_LATER, ERROR, ...).
    Reply(BindClientResponse),
    /// That reply followed, in the same record, by these bytes (a future, longer reply).
    Extended(BindClientResponse, Vec<u8>),
    /// PROG_UNAVAIL, as a plain NFS server (ganesha) answers; the connection stays usable.
    ProgUnavail,
    /// These raw bytes (not a valid reply), then the connection is closed.
    Garbage(Vec<u8>),
    /// Never answer; keep the connection open.
    Silent,
    /// Close the connection without answering.
    Close,
    /// The n-th bind received gets the n-th behaviour; the last one repeats.
    Sequence(Vec<BindBehaviour>),
}

impl BindBehaviour {
    /// The behaviour for the `n`-th bind (0-based) of this target.
    fn nth(&self, n: usize) -> &BindBehaviour {
        match self {
            BindBehaviour::Sequence(list) => list
                .get(n)
                .or(list.last())
                .map_or(&BindBehaviour::Close, |b| b.nth(0)),
            other => other,
        }
    }

    /// READY on partition `[byte; 64]` with this scale-up configuration.
    pub fn ready_with(byte: u8, scale_up_config: awsfile::ScaleUpConfig) -> Self {
        BindBehaviour::Reply(BindClientResponse {
            bind_response: BindResponse::Ready(PartitionId([byte; 64])),
            scale_up_config,
        })
    }

    /// READY on a partition made of `byte`, with efs-proxy's default scale-up settings.
    pub fn ready(byte: u8) -> Self {
        BindBehaviour::Reply(BindClientResponse {
            bind_response: BindResponse::Ready(PartitionId([byte; 64])),
            scale_up_config: Default::default(),
        })
    }

    /// Parses the command-line spelling: ready, retry-later, error, prog-unavail, garbage,
    /// silent, close.
    pub fn parse(s: &str) -> Option<Self> {
        let reply = |r| {
            BindBehaviour::Reply(BindClientResponse {
                bind_response: r,
                scale_up_config: Default::default(),
            })
        };
        Some(match s {
            "ready" => Self::ready(0xa0),
            "retry-later" => reply(BindResponse::RetryLater("busy".into())),
            "error" => reply(BindResponse::Error("bind refused by test".into())),
            "prog-unavail" => BindBehaviour::ProgUnavail,
            "garbage" => BindBehaviour::Garbage(b"\x80\x00\x00\x08not-rpc!".to_vec()),
            "silent" => BindBehaviour::Silent,
            "close" => BindBehaviour::Close,
            _ => return None,
        })
    }
}

/// What serves NFS records after the bind.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Answer every call in-process.
    Responder(Responder),
    /// Relay bytes to a real NFS server at this address.
    Relay(SocketAddr),
}

/// Configuration of a fake mount target.
#[derive(Debug)]
pub struct MountTargetConfig {
    /// `None`: plaintext (no TLS at all).
    pub tls: Option<ServerTls>,
    pub bind: BindBehaviour,
    pub backend: Backend,
    pub max_record_size: usize,
    /// Check IAM client certificates (TLS only): a refused certificate gets a bind ERROR
    /// naming the reason, then the connection is closed (see [`crate::iam_verify`]).
    pub iam: Option<IamVerifier>,
}

/// The server side of TLS.
#[derive(Debug)]
pub struct ServerTls {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Refuse handshakes without a client certificate (as EFS does).
    pub require_client_cert: bool,
}

/// What the fake mount target saw, for assertions.
#[derive(Debug, Default, Clone)]
pub struct Observations {
    /// TCP connections accepted.
    pub connections: usize,
    /// TLS handshakes completed.
    pub handshakes: usize,
    /// DER of each client certificate presented.
    pub client_certs: Vec<Vec<u8>>,
    /// SNI of each handshake.
    pub server_names: Vec<Option<String>>,
    /// The identifier of each bind call.
    pub binds: Vec<ProxyIdentifier>,
    /// NFS records handled after the bind (responder backend only).
    pub records: usize,
    /// Records handled per connection, in accept order (responder backend only).
    pub records_by_connection: Vec<usize>,
    /// The xid of each call handled, per connection in accept order (responder backend only).
    pub xids_by_connection: Vec<Vec<u32>>,
    /// Client certificates accepted by the IAM check.
    pub iam_accepted: usize,
    /// Why the IAM check refused client certificates, in order.
    pub iam_refusals: Vec<String>,
    /// Relayed replies with NFS4ERR_CONN_NOT_BOUND_TO_SESSION (relay backend only).
    pub conn_not_bound_replies: usize,
}

/// A running fake mount target.
pub struct FakeMountTarget {
    addr: SocketAddr,
    observations: Arc<Mutex<Observations>>,
    shutdown: CancellationToken,
    kills: Arc<Mutex<Vec<CancellationToken>>>,
    muted: Arc<Mutex<std::collections::HashSet<usize>>>,
}

impl Drop for FakeMountTarget {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl FakeMountTarget {
    /// Starts serving on `listen` in the current runtime.
    pub async fn start(listen: SocketAddr, config: MountTargetConfig) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let acceptor = config.tls.map(tls_acceptor).transpose()?;
        let shared = Arc::new(Shared {
            bind: config.bind,
            backend: config.backend,
            max_record_size: config.max_record_size,
            iam: config.iam,
            observations: Default::default(),
            kills: Default::default(),
            muted: Default::default(),
        });
        let shutdown = CancellationToken::new();
        let observations = shared.observations.clone();
        let kills = shared.kills.clone();
        let muted = shared.muted.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok(pair) => pair,
                        Err(e) => { warn!("accept: {e}"); continue; }
                    },
                };
                let shared = shared.clone();
                let acceptor = acceptor.clone();
                let stop = stop.child_token();
                let conn = {
                    let mut kills = shared.kills.lock().unwrap();
                    kills.push(stop.clone());
                    kills.len() - 1
                };
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        r = serve(stream, acceptor, &shared, conn) => if let Err(e) = r {
                            debug!("connection from {peer}: {e:#}");
                        }
                    }
                });
            }
        });
        Ok(FakeMountTarget {
            addr,
            observations,
            shutdown,
            kills,
            muted,
        })
    }

    /// Stops answering the `n`-th accepted connection (0-based): its calls stay in flight,
    /// as on a server that hangs.
    pub fn mute_connection(&self, n: usize) {
        self.muted.lock().unwrap().insert(n);
    }

    /// Drops the `n`-th accepted connection (0-based) at once, as a crashed server would.
    pub fn kill_connection(&self, n: usize) {
        if let Some(token) = self.kills.lock().unwrap().get(n) {
            token.cancel();
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A copy of what was seen so far.
    pub fn observations(&self) -> Observations {
        self.observations.lock().unwrap().clone()
    }
}

struct Shared {
    bind: BindBehaviour,
    backend: Backend,
    max_record_size: usize,
    iam: Option<IamVerifier>,
    observations: Arc<Mutex<Observations>>,
    /// One token per accepted connection, to kill it.
    kills: Arc<Mutex<Vec<CancellationToken>>>,
    /// Connections (accept order) whose calls are read but never answered.
    muted: Arc<Mutex<std::collections::HashSet<usize>>>,
}

impl Shared {
    fn observe(&self, f: impl FnOnce(&mut Observations)) {
        f(&mut self.observations.lock().unwrap());
    }
}

async fn serve(
    stream: TcpStream,
    acceptor: Option<TlsAcceptor>,
    shared: &Shared,
    index: usize,
) -> anyhow::Result<()> {
    shared.observe(|o| o.connections += 1);
    stream.set_nodelay(true)?;
    match acceptor {
        None => serve_stream(stream, shared, None, index).await,
        Some(acceptor) => {
            let tls = acceptor.accept(stream).await?;
            let (_, conn) = tls.get_ref();
            let cert = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec());
            let sni = conn.server_name().map(str::to_string);
            info!(
                sni = ?sni,
                client_cert_bytes = cert.as_ref().map_or(0, |c| c.len()),
                "tls: handshake complete ({:?})",
                conn.protocol_version()
            );
            let refusal = shared
                .iam
                .as_ref()
                .and_then(|iam| check_iam(iam, cert.as_deref()));
            shared.observe(|o| {
                o.handshakes += 1;
                o.server_names.push(sni);
                o.client_certs.extend(cert);
                match &refusal {
                    Some(reason) => o.iam_refusals.push(reason.clone()),
                    None if shared.iam.is_some() => o.iam_accepted += 1,
                    None => {}
                }
            });
            serve_stream(tls, shared, refusal, index).await
        }
    }
}

/// The IAM check of a presented certificate: `None` when accepted, else the reason.
fn check_iam(iam: &IamVerifier, cert: Option<&[u8]>) -> Option<String> {
    let outcome = match cert {
        None => Err("no client certificate".to_string()),
        Some(der) => iam
            .verify(der, std::time::SystemTime::now())
            .map_err(|r| r.to_string()),
    };
    match outcome {
        Ok(ok) => {
            info!(
                access_key_id = %ok.access_key_id,
                signed_at = %ok.signed_at,
                session_token = ok.session_token.is_some(),
                "iam: client certificate accepted"
            );
            None
        }
        Err(reason) => {
            warn!("iam: refusing the client: {reason}");
            Some(reason)
        }
    }
}

async fn serve_stream<S>(
    stream: S,
    shared: &Shared,
    iam_refusal: Option<String>,
    conn: usize,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut framed = Framed::new(stream, RecordCodec::new(shared.max_record_size));
    let Some(first) = framed.next().await.transpose()? else {
        return Ok(());
    };
    if let Some(reason) = iam_refusal {
        // Answer the bind with the reason, so the proxy can log it, then hang up.
        if let Ok((xid, _)) = awsfile::parse_bind_call(first.message()) {
            let response = BindClientResponse {
                bind_response: BindResponse::Error(format!("IAM authentication failed: {reason}")),
                scale_up_config: Default::default(),
            };
            framed
                .send(Record::from_message(&awsfile::bind_reply(xid, &response)?)?)
                .await?;
        }
        framed.get_mut().shutdown().await.ok();
        return Ok(());
    }
    let pending_record = match awsfile::parse_bind_call(first.message()) {
        Ok((xid, id)) => {
            info!(incarnation = ?id.incarnation_number(), "bind_client_to_partition received");
            let mut n = 0;
            shared.observe(|o| {
                o.binds.push(id);
                n = o.binds.len() - 1;
            });
            match shared.bind.nth(n) {
                BindBehaviour::Reply(response) => {
                    let reply = awsfile::bind_reply(xid, response)?;
                    framed.send(Record::from_message(&reply)?).await?;
                }
                BindBehaviour::Extended(response, extra) => {
                    let mut reply = awsfile::bind_reply(xid, response)?;
                    reply.extend_from_slice(extra);
                    framed.send(Record::from_message(&reply)?).await?;
                }
                BindBehaviour::ProgUnavail => {
                    let reply =
                        RpcMessage::reply(xid, ReplyHeader::accepted(AcceptStat::ProgUnavail));
                    framed.send(Record::from_message(&reply.encode()?)?).await?;
                }
                BindBehaviour::Garbage(bytes) => {
                    let stream = framed.get_mut();
                    stream.write_all(bytes).await?;
                    stream.shutdown().await?;
                    return Ok(());
                }
                BindBehaviour::Silent => {
                    while framed.next().await.transpose()?.is_some() {}
                    return Ok(());
                }
                BindBehaviour::Close | BindBehaviour::Sequence(_) => return Ok(()),
            }
            None
        }
        // Not a bind: the proxy reconnected without bind, this is already NFS traffic.
        Err(_) => Some(first),
    };

    match &shared.backend {
        Backend::Responder(responder) => {
            if let Some(record) = pending_record {
                answer(&mut framed, responder, record, shared, conn).await?;
            }
            while let Some(record) = framed.next().await.transpose()? {
                answer(&mut framed, responder, record, shared, conn).await?;
            }
            Ok(())
        }
        Backend::Relay(nfs) => {
            let mut upstream = TcpStream::connect(nfs).await?;
            upstream.set_nodelay(true)?;
            let FramedParts { io, read_buf, .. } = framed.into_parts();
            if let Some(record) = pending_record {
                upstream.write_all(record.wire()).await?;
            }
            upstream.write_all(&read_buf).await?;
            relay(io, upstream, shared).await
        }
    }
}

/// NFSv4.1's status for a request on a connection not bound to its session (RFC 8881).
pub const NFS4ERR_CONN_NOT_BOUND_TO_SESSION: u32 = 10055;

/// Relays the client's bytes to the NFS server as they come, and the server's replies record
/// by record, counting COMPOUND replies whose status is NFS4ERR_CONN_NOT_BOUND_TO_SESSION: the
/// sign that the proxy sent a session-management COMPOUND on a connection the server never
/// bound to the session.
async fn relay<S>(client: S, server: TcpStream, shared: &Shared) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_rd, mut client_wr) = tokio::io::split(client);
    let (mut server_rd, mut server_wr) = server.into_split();
    let to_server = async {
        tokio::io::copy(&mut client_rd, &mut server_wr).await?;
        server_wr.shutdown().await
    };
    let to_client = async {
        let mut replies = tokio_util::codec::FramedRead::new(
            &mut server_rd,
            RecordCodec::new(shared.max_record_size),
        );
        while let Some(record) = replies
            .next()
            .await
            .transpose()
            .map_err(std::io::Error::other)?
        {
            if compound_status(record.message()) == Some(NFS4ERR_CONN_NOT_BOUND_TO_SESSION) {
                warn!("relay: a reply is NFS4ERR_CONN_NOT_BOUND_TO_SESSION");
                shared.observe(|o| o.conn_not_bound_replies += 1);
            }
            client_wr.write_all(record.wire()).await?;
        }
        client_wr.shutdown().await
    };
    tokio::try_join!(to_server, to_client)?;
    Ok(())
}

/// The status word that starts an accepted reply's results (a COMPOUND's `nfsstat4`); `None`
/// for calls, refusals and results shorter than a word (NULL).
fn compound_status(message: &[u8]) -> Option<u32> {
    let (_, results) = efs_rpc::parse_accepted_reply(message).ok()?;
    let word = results.get(..4)?;
    Some(u32::from_be_bytes(word.try_into().ok()?))
}

async fn answer<S>(
    framed: &mut Framed<S, RecordCodec>,
    responder: &Responder,
    record: Record,
    shared: &Shared,
    conn: usize,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    shared.observe(|o| {
        o.records += 1;
        if o.records_by_connection.len() <= conn {
            o.records_by_connection.resize(conn + 1, 0);
        }
        o.records_by_connection[conn] += 1;
        if o.xids_by_connection.len() <= conn {
            o.xids_by_connection.resize(conn + 1, Vec::new());
        }
        if let Some(xid) = record.message().first_chunk::<4>() {
            o.xids_by_connection[conn].push(u32::from_be_bytes(*xid));
        }
    });
    if shared.muted.lock().unwrap().contains(&conn) {
        return Ok(());
    }
    let mut reply = BytesMut::new();
    if respond_record(responder, record.message(), &mut reply) {
        let stream = framed.get_mut();
        stream.write_all(&reply).await?;
        // A TLS stream takes plaintext it cannot send yet when the socket is full, and
        // nothing sends it while this task waits for the next call: without the flush a
        // client waiting for this reply waits forever (the benchmark stalled this way).
        stream.flush().await?;
    }
    Ok(())
}

fn tls_acceptor(tls: ServerTls) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyClientCert {
        provider: provider.clone(),
        required: tls.require_client_cert,
    });
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(tls.chain, tls.key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts any client certificate (IAM certificates are self-signed; their content is what
/// the service checks), but requires one when configured and checks the handshake signature,
/// so the client proves it holds the certificate's key.
#[derive(Debug)]
struct AnyClientCert {
    provider: Arc<CryptoProvider>,
    required: bool,
}

impl ClientCertVerifier for AnyClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        self.required
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        HandshakeSignatures(self.provider.clone()).tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        HandshakeSignatures(self.provider.clone()).tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        HandshakeSignatures(self.provider.clone()).schemes()
    }
}
