//! The test bed most proxy tests start from: a test PKI written to a temporary directory and
//! the fake mount target behind TLS that requires the client certificate, plus the standard
//! `efs-proxy run` arguments against it. One place, so that a change to what "a working
//! mount target" means is made once.

use tempfile::TempDir;

use crate::{
    Backend, BindBehaviour, FakeMountTarget, MountTargetConfig, PkiFiles, SERVER_NAME, ServerTls,
    TestPki,
};

/// A running fake mount target with its PKI (see the module documentation).
pub struct TestBed {
    /// The mount target (TLS, client certificate required, the given bind behaviour).
    pub target: FakeMountTarget,
    /// The CA, server and client keys and certificates.
    pub pki: TestPki,
    /// The same, as PEM files in `_dir`.
    pub files: PkiFiles,
    _dir: TempDir,
}

impl TestBed {
    /// Starts the mount target on 127.0.0.1 (any port).
    pub async fn start(bind: BindBehaviour, backend: Backend) -> TestBed {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pki = TestPki::generate(&[SERVER_NAME]).expect("the test PKI");
        let files = pki.write(dir.path()).expect("the test PKI's files");
        let config = MountTargetConfig {
            tls: Some(ServerTls {
                chain: vec![pki.server.cert_der.clone()],
                key: pki.server.private_key(),
                require_client_cert: true,
            }),
            bind,
            backend,
            max_record_size: efs_rpc::DEFAULT_MAX_RECORD_SIZE,
            iam: None,
        };
        let target = FakeMountTarget::start("127.0.0.1:0".parse().expect("an address"), config)
            .await
            .expect("the fake mount target starts");
        TestBed {
            target,
            pki,
            files,
            _dir: dir,
        }
    }

    /// `efs-proxy run` listening on any loopback port, trusting the test CA, presenting the
    /// client certificate and verifying the mount target's name; then `extra`.
    pub fn proxy_args(&self, extra: &[&str]) -> Vec<String> {
        let f = &self.files;
        let path = |p: &std::path::Path| p.to_str().expect("a UTF-8 path").to_string();
        let mut args: Vec<String> = vec![
            "run".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--target".into(),
            self.target.addr().to_string(),
            "--server-name".into(),
            SERVER_NAME.into(),
            "--ca-file".into(),
            path(&f.ca),
            "--cert".into(),
            path(&f.client_cert),
            "--key".into(),
            path(&f.client_key),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}
