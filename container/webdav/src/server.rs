//! HTTP/1.1 serving: hyper connections in front of the dav-server handler.
//!
//! The handler has real locks (`MemLs`): Finder mounts a WebDAV volume read-only unless the
//! server advertises DAV class 2 *and* a LOCK succeeds, and dav-server without a lock system
//! still advertises class 2 but answers LOCK with 405. Locks live in memory, which is what a
//! single server in one container needs.
//!
//! Around the handler, per request: the Host and Origin check ([`crate::guard`]), basic
//! authentication, the body idle timeout ([`crate::limits`]), and the commit of atomic PUTs
//! ([`crate::atomic`]); per connection, the connection cap.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use dav_server::body::Body;
use dav_server::memls::MemLs;
use dav_server::{DavConfig, DavHandler};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::atomic::RequestPuts;
use crate::auth::BasicAuth;
use crate::fs::{BucketFs, MemoryLimits};
use crate::guard::{HostPolicy, Refusal};
use crate::limits::{CapWarning, IdleBody};

/// What the server serves, and how.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where WebDAV clients connect.
    pub listen: SocketAddr,
    /// The directory served (the NFS mount point).
    pub root: PathBuf,
    /// Basic authentication, if any.
    pub auth: Option<BasicAuth>,
    /// Memory for Finder metadata files and dead properties.
    pub limits: MemoryLimits,
    /// How long in-flight requests may take to finish after shutdown starts.
    pub grace: Duration,
    /// The port clients use (a published port); `None`: the port listened on.
    pub public_port: Option<u16>,
    /// Host names accepted in Host and Origin besides the loopback ones.
    pub allow_hosts: Vec<String>,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long a request body may go without data before the request fails.
    pub body_timeout: Duration,
}

impl ServerConfig {
    /// The defaults of the command line for `root` on `listen`.
    pub fn new(listen: SocketAddr, root: impl Into<PathBuf>) -> Self {
        ServerConfig {
            listen,
            root: root.into(),
            auth: None,
            limits: MemoryLimits::default(),
            grace: Duration::from_secs(10),
            public_port: None,
            allow_hosts: Vec::new(),
            max_connections: 64,
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// The WebDAV handler over `fs`, with in-memory locks.
pub fn dav_handler(fs: BucketFs) -> DavHandler {
    DavHandler::builder()
        .filesystem(Box::new(fs))
        .locksystem(MemLs::new())
        .autoindex(true)
        .build_handler()
}

/// What every request needs.
struct Shared {
    handler: DavHandler,
    auth: Option<BasicAuth>,
    policy: HostPolicy,
    body_timeout: Duration,
}

/// A bound server; [`Server::run`] serves until the shutdown future completes.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    grace: Duration,
    max_connections: usize,
}

impl Server {
    /// Checks the root and binds the listening socket.
    pub async fn bind(config: ServerConfig) -> anyhow::Result<Self> {
        let cant_read = || {
            format!(
                "--root {}: cannot read it; it must be the NFS mount point (the container's \
                 entrypoint mounts it at /mnt/s3files before starting WebDAV)",
                config.root.display()
            )
        };
        let meta = std::fs::metadata(&config.root).with_context(cant_read)?;
        if !meta.is_dir() {
            anyhow::bail!("--root {}: not a directory", config.root.display());
        }
        if config.max_connections == 0 || config.body_timeout.is_zero() {
            anyhow::bail!("--max-connections and --body-timeout must be at least 1");
        }
        let fs = BucketFs::new(&config.root, config.limits).with_context(cant_read)?;
        let listener = TcpListener::bind(config.listen).await.with_context(|| {
            format!(
                "cannot listen on {}: is another server using the port? (--listen ADDR:PORT)",
                config.listen
            )
        })?;
        let port = match config.public_port {
            Some(port) => port,
            None => listener.local_addr()?.port(),
        };
        let policy = HostPolicy::new(&config.allow_hosts, port).map_err(anyhow::Error::msg)?;
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                handler: dav_handler(fs),
                auth: config.auth,
                policy,
                body_timeout: config.body_timeout,
            }),
            grace: config.grace,
            max_connections: config.max_connections,
        })
    }

    /// The address actually bound (port 0 picks one).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The port accepted in Host and Origin headers.
    pub fn public_port(&self) -> u16 {
        self.shared.policy.port()
    }

    /// Accepts connections until `shutdown` completes, then lets in-flight requests finish
    /// (at most the grace period).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(60))
            .keep_alive(true);
        let graceful = GracefulShutdown::new();
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let mut cap = CapWarning::default();
        tokio::pin!(shutdown);
        loop {
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    cap.reached(self.max_connections);
                    tokio::select! {
                        slot = slots.clone().acquire_owned() => match slot {
                            Ok(slot) => slot,
                            Err(_) => break,
                        },
                        () = &mut shutdown => break,
                    }
                }
            };
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let shared = self.shared.clone();
            let service = service_fn(move |req| serve(req, shared.clone()));
            let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                drop(slot);
            });
        }
        drop(self.listener);
        if tokio::time::timeout(self.grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "requests still running after {:?}; closing their connections",
                self.grace
            );
        }
    }
}

async fn serve(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if let Err(refusal) = shared.policy.check(req.version(), req.uri(), req.headers()) {
        tracing::warn!(%method, %path, "{}", refusal.message);
        return Ok(refused(refusal));
    }
    let expired = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| IdleBody::new(body, shared.body_timeout, expired.clone()));
    let puts = RequestPuts::default();
    let response = puts.scope(dispatch(req, &shared)).await;
    let response = if expired.load(Ordering::Relaxed) {
        drop(puts);
        let secs = shared.body_timeout.as_secs();
        tracing::warn!(
            %method, %path,
            "request body stalled for {secs} s (--body-timeout): request failed, connection \
             closed"
        );
        timed_out(secs)
    } else if response.status().is_success() {
        match puts.commit().await {
            Ok(()) => response,
            Err(e) => text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("upload not stored: {e}; check the NFS mount and the proxy's log\n"),
            ),
        }
    } else {
        response
    };
    let status = response.status();
    let ms = started.elapsed().as_millis();
    if status.is_server_error() {
        tracing::warn!(%method, %path, status = status.as_u16(), ms, "request failed");
    } else {
        tracing::debug!(%method, %path, status = status.as_u16(), ms, "request");
    }
    Ok(response)
}

async fn dispatch(req: Request<IdleBody<Incoming>>, shared: &Shared) -> Response<Body> {
    match &shared.auth {
        None => shared.handler.handle(req).await,
        Some(auth) => match auth.check(req.headers()) {
            Some(user) => {
                let config = DavConfig::new().principal(user);
                shared.handler.handle_with(config, req).await
            }
            None => unauthorized(),
        },
    }
}

fn text_response(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn refused(refusal: Refusal) -> Response<Body> {
    text_response(refusal.status, refusal.message + "\n")
}

fn timed_out(secs: u64) -> Response<Body> {
    let mut response = text_response(
        StatusCode::REQUEST_TIMEOUT,
        format!("no request body data for {secs} s: request failed (efs-webdav --body-timeout)\n"),
    );
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

fn unauthorized() -> Response<Body> {
    let mut response = text_response(
        StatusCode::UNAUTHORIZED,
        "authentication required\n".to_string(),
    );
    response.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Basic realm=\"s3files\", charset=\"UTF-8\""),
    );
    response
}
