//! The test bed every proxy test starts from: a fake mount target behind TLS that requires the
//! client certificate, the test PKI written to a temporary directory, and the `efs-proxy`
//! command lines that point at them. One place, so that a change to what "a working mount
//! target" means, or to how the proxy is told about it, is made once.
//!
//! ```text
//! let bed = TestBed::builder().iam(iam_verifier("s3files")).start().await;
//! let args = bed.run_with_iam().with("--key", bed.rsa_key());
//! let proxy = ProxyProcess::spawn_with_env(bin, &args, &bed.env(&credentials)).await?;
//! ```
//!
//! The IAM beds sign for [`FS_ID`] in [`REGION`] with the [`AKID`]/[`SECRET`] identity; the
//! server certificate names [`SERVER_NAME`], that file system's S3 Files mount target.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tempfile::TempDir;

use crate::{
    Backend, BindBehaviour, FakeMountTarget, IamVerifier, MountTargetConfig, PkiFiles, Responder,
    SERVER_NAME, ServerTls, TestPki,
};

/// The file system of the IAM beds (and of [`SERVER_NAME`]).
pub const FS_ID: &str = "fs-0123456789abcdef0";
/// Its region.
pub const REGION: &str = "us-east-1";
/// The EFS name of [`FS_ID`] in [`REGION`]; put it on the server certificate with
/// [`TestBedBuilder::server_names`] to serve EFS names too.
pub const EFS_SERVER_NAME: &str = "fs-0123456789abcdef0.efs.us-east-1.amazonaws.com";
/// The access key id of the test identity (AWS's documentation example).
pub const AKID: &str = "AKIDEXAMPLE";
/// Its secret access key, which the IAM-verifying mount target knows.
pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// A verifier that accepts certificates for [`FS_ID`] in [`REGION`], signed for `service`
/// (`s3files` or `elasticfilesystem`) by [`AKID`] with [`SECRET`].
pub fn iam_verifier(service: &str) -> IamVerifier {
    IamVerifier {
        secret_access_key: SECRET.into(),
        service: service.into(),
        region: REGION.into(),
        fs_id: FS_ID.into(),
        access_key_id: Some(AKID.into()),
    }
}

/// How the bed's mount target behaves; see [`TestBed::builder`] for the defaults.
#[must_use = "nothing starts until `start`"]
pub struct TestBedBuilder {
    bind: BindBehaviour,
    backend: Backend,
    tls: bool,
    iam: Option<IamVerifier>,
    server_names: Vec<String>,
}

impl TestBedBuilder {
    /// How the target answers `bind_client_to_partition`.
    pub fn bind(mut self, bind: BindBehaviour) -> Self {
        self.bind = bind;
        self
    }

    /// How the target answers the NFS calls after the bind.
    pub fn responder(self, responder: Responder) -> Self {
        self.backend(Backend::Responder(responder))
    }

    /// Where the target sends the NFS calls after the bind.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// No TLS at all: the target is a plain NFS server (the PKI is still written).
    pub fn plaintext(mut self) -> Self {
        self.tls = false;
        self
    }

    /// The target checks IAM certificates with `verifier` (see [`iam_verifier`]).
    pub fn iam(mut self, verifier: IamVerifier) -> Self {
        self.iam = Some(verifier);
        self
    }

    /// The names on the server certificate (default: [`SERVER_NAME`] alone).
    pub fn server_names(mut self, names: &[&str]) -> Self {
        self.server_names = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Generates the PKI, writes it and starts the target on 127.0.0.1 (any port).
    pub async fn start(self) -> TestBed {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let names: Vec<&str> = self.server_names.iter().map(String::as_str).collect();
        let pki = TestPki::generate(&names).expect("the test PKI");
        let files = pki
            .write(&dir.path().join("pki"))
            .expect("the test PKI's files");
        let tls = self.tls.then(|| server_tls(&pki));
        let target = start_target(tls, self.bind, self.backend, self.iam).await;
        TestBed {
            target,
            pki,
            files,
            dir,
            listen_port: OnceLock::new(),
        }
    }
}

/// A running fake mount target with its PKI (see the module documentation).
pub struct TestBed {
    /// The mount target.
    pub target: FakeMountTarget,
    /// The CA, server and client keys and certificates.
    pub pki: TestPki,
    /// The same, as PEM files under `pki/` in the bed's directory.
    pub files: PkiFiles,
    dir: TempDir,
    listen_port: OnceLock<u16>,
}

impl TestBed {
    /// A bed whose target requires the client certificate over TLS, answers bind with READY
    /// (partition `01…`), echoes NFS calls and does not check IAM; change any of it here.
    pub fn builder() -> TestBedBuilder {
        TestBedBuilder {
            bind: BindBehaviour::ready(1),
            backend: Backend::Responder(Responder::Echo),
            tls: true,
            iam: None,
            server_names: vec![SERVER_NAME.to_string()],
        }
    }

    /// The default bed with another bind behaviour and backend.
    pub async fn start(bind: BindBehaviour, backend: Backend) -> TestBed {
        TestBed::builder().bind(bind).backend(backend).start().await
    }

    /// A second mount target with this bed's server certificate (TLS, client certificate
    /// required, echo, no IAM) and another bind behaviour.
    pub async fn another_target(&self, bind: BindBehaviour) -> FakeMountTarget {
        let backend = Backend::Responder(Responder::Echo);
        start_target(Some(server_tls(&self.pki)), bind, backend, None).await
    }

    /// The bed's temporary directory: the HOME of [`env`](Self::env), for a test's own files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `name` in the bed's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The path of a copy of the IAM test vectors' RSA-3072 key in the bed's directory
    /// (`key.pem`): generating one per proxy is slow in unoptimized builds.
    pub fn rsa_key(&self) -> String {
        let path = self.path("key.pem");
        if !path.exists() {
            let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proxy/tests/vectors/iam");
            std::fs::copy(vectors.join("test-key-rsa3072.pem"), &path).expect("the vector key");
        }
        utf8(&path)
    }

    /// An environment with nothing but `extra`, a HOME without `~/.aws` (the bed's
    /// directory) and instance metadata off: no AWS setting of the machine leaks in, and
    /// nothing is sent beyond loopback.
    pub fn env<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let home = self.dir.path().to_str().expect("a UTF-8 path");
        let mut env = vec![("HOME", home), ("AWS_EC2_METADATA_DISABLED", "true")];
        env.extend_from_slice(extra);
        env
    }

    /// A loopback address with a port nothing holds now, the same on every call, for a proxy
    /// that must be told its port in advance (drop-in configs). It is below the kernel's
    /// ephemeral range (32768-), where the outgoing connections of tests running in parallel
    /// cannot take it between this pick and the proxy's bind.
    pub fn listen_addr(&self) -> String {
        format!("127.0.0.1:{}", self.listen_port.get_or_init(free_port))
    }

    /// `efs-proxy run` on any loopback port, trusting the test CA, presenting the test
    /// client certificate and verifying the target's name.
    pub fn run_with_cert(&self) -> ProxyArgs {
        self.with_cert(ProxyArgs::new("run").with("--listen", "127.0.0.1:0"))
    }

    /// `efs-proxy check` with the same certificate files as [`run_with_cert`](Self::run_with_cert).
    pub fn check_with_cert(&self) -> ProxyArgs {
        self.with_cert(ProxyArgs::new("check"))
    }

    /// `efs-proxy run` on any loopback port with an IAM certificate for [`FS_ID`] in
    /// [`REGION`] on S3 Files (the server name derived from them), trusting the test CA.
    pub fn run_with_iam(&self) -> ProxyArgs {
        self.with_iam(ProxyArgs::new("run").with("--listen", "127.0.0.1:0"))
    }

    /// `efs-proxy check` with the same IAM options as [`run_with_iam`](Self::run_with_iam).
    pub fn check_with_iam(&self) -> ProxyArgs {
        self.with_iam(ProxyArgs::new("check"))
    }

    /// [`run_with_cert`](Self::run_with_cert) followed by `extra`.
    pub fn proxy_args(&self, extra: &[&str]) -> Vec<String> {
        self.run_with_cert().and(extra).into()
    }

    fn with_cert(&self, args: ProxyArgs) -> ProxyArgs {
        args.with("--target", self.target.addr().to_string())
            .with("--server-name", SERVER_NAME)
            .with("--ca-file", utf8(&self.files.ca))
            .with("--cert", utf8(&self.files.client_cert))
            .with("--key", utf8(&self.files.client_key))
    }

    fn with_iam(&self, args: ProxyArgs) -> ProxyArgs {
        args.with("--fs-id", FS_ID)
            .with("--region", REGION)
            .with("--service", "s3files")
            .with("--target", self.target.addr().to_string())
            .with("--ca-file", utf8(&self.files.ca))
    }
}

/// A plain NFS server on 127.0.0.1 (no TLS, no IAM) that answers bind with `bind` and echoes.
pub async fn plaintext_target(bind: BindBehaviour) -> FakeMountTarget {
    start_target(None, bind, Backend::Responder(Responder::Echo), None).await
}

/// An `efs-proxy` command line: a subcommand and options, edited by option name. It derefs to
/// the argument list, and goes where `ProxyProcess` and `run_to_exit` take arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyArgs(Vec<String>);

impl ProxyArgs {
    /// `efs-proxy SUBCOMMAND` without options.
    pub fn new(subcommand: &str) -> ProxyArgs {
        ProxyArgs(vec![subcommand.to_string()])
    }

    /// `option value`: the value replaced when the option is there, else both appended.
    pub fn with(mut self, option: &str, value: impl Into<String>) -> ProxyArgs {
        let value = value.into();
        match self.0.iter().position(|a| a == option) {
            Some(i) => self.0[i + 1] = value,
            None => self.0.extend([option.to_string(), value]),
        }
        self
    }

    /// Without `option` and its value.
    pub fn without(mut self, option: &str) -> ProxyArgs {
        if let Some(i) = self.0.iter().position(|a| a == option) {
            self.0.drain(i..i + 2);
        }
        self
    }

    /// `args` appended as they are (flags, or options that may repeat).
    pub fn and(mut self, args: &[&str]) -> ProxyArgs {
        self.0.extend(args.iter().map(|a| a.to_string()));
        self
    }
}

impl std::ops::Deref for ProxyArgs {
    type Target = [String];
    fn deref(&self) -> &[String] {
        &self.0
    }
}

impl From<ProxyArgs> for Vec<String> {
    fn from(args: ProxyArgs) -> Vec<String> {
        args.0
    }
}

impl IntoIterator for ProxyArgs {
    type Item = String;
    type IntoIter = std::vec::IntoIter<String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ProxyArgs {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The one place a test mount target's configuration is written.
async fn start_target(
    tls: Option<ServerTls>,
    bind: BindBehaviour,
    backend: Backend,
    iam: Option<IamVerifier>,
) -> FakeMountTarget {
    let config = MountTargetConfig {
        tls,
        bind,
        backend,
        max_record_size: efs_rpc::DEFAULT_MAX_RECORD_SIZE,
        iam,
    };
    let any_port: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    FakeMountTarget::start(any_port, config)
        .await
        .expect("the fake mount target starts")
}

/// The server side of TLS with the PKI's server certificate, requiring a client certificate
/// (as EFS does).
fn server_tls(pki: &TestPki) -> ServerTls {
    ServerTls {
        chain: vec![pki.server.cert_der.clone()],
        key: pki.server.private_key(),
        require_client_cert: true,
    }
}

/// A port in 20000-31999 that nothing listens on now (see [`TestBed::listen_addr`]).
fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new();
    for attempt in 0u32..1000 {
        let port = 20000 + (random.hash_one(attempt) % 12000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port in 20000-31999");
}

fn utf8(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_string()
}
