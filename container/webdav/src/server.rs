//! HTTP/1.1 serving: hyper connections in front of the dav-server handler.
//!
//! The handler has real locks (`MemLs`): Finder mounts a WebDAV volume read-only unless the
//! server advertises DAV class 2 *and* a LOCK succeeds, and dav-server without a lock system
//! still advertises class 2 but answers LOCK with 405. Locks live in memory, which is what a
//! single server in one container needs.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
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

use crate::auth::BasicAuth;
use crate::fs::{BucketFs, MemoryLimits};

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
}

/// The WebDAV handler over `fs`, with in-memory locks.
pub fn dav_handler(fs: BucketFs) -> DavHandler {
    DavHandler::builder()
        .filesystem(Box::new(fs))
        .locksystem(MemLs::new())
        .autoindex(true)
        .build_handler()
}

/// A bound server; [`Server::run`] serves until the shutdown future completes.
pub struct Server {
    listener: TcpListener,
    handler: DavHandler,
    auth: Option<Arc<BasicAuth>>,
    grace: Duration,
}

impl Server {
    /// Checks the root and binds the listening socket.
    pub async fn bind(config: ServerConfig) -> anyhow::Result<Self> {
        let meta = std::fs::metadata(&config.root).with_context(|| {
            format!(
                "--root {}: cannot read it; it must be the NFS mount point (the container's \
                 entrypoint mounts it at /mnt/s3files before starting WebDAV)",
                config.root.display()
            )
        })?;
        if !meta.is_dir() {
            anyhow::bail!("--root {}: not a directory", config.root.display());
        }
        let listener = TcpListener::bind(config.listen).await.with_context(|| {
            format!(
                "cannot listen on {}: is another server using the port? (--listen ADDR:PORT)",
                config.listen
            )
        })?;
        let fs = BucketFs::new(&config.root, config.limits);
        Ok(Server {
            listener,
            handler: dav_handler(fs),
            auth: config.auth.map(Arc::new),
            grace: config.grace,
        })
    }

    /// The address actually bound (port 0 picks one).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
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
        tokio::pin!(shutdown);
        loop {
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
            let handler = self.handler.clone();
            let auth = self.auth.clone();
            let service = service_fn(move |req| serve(req, handler.clone(), auth.clone()));
            let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
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

async fn serve(
    req: Request<Incoming>,
    handler: DavHandler,
    auth: Option<Arc<BasicAuth>>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = match auth.as_deref() {
        None => handler.handle(req).await,
        Some(auth) => match auth.check(req.headers()) {
            Some(user) => {
                let config = DavConfig::new().principal(user);
                handler.handle_with(config, req).await
            }
            None => unauthorized(),
        },
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

fn unauthorized() -> Response<Body> {
    let mut response = Response::new(Body::from("authentication required\n".to_string()));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Basic realm=\"s3files\", charset=\"UTF-8\""),
    );
    response
}
