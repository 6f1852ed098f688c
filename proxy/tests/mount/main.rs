//! `efs-proxy mount` / `umount` / `mounts` / `install-mount-helper` and the `mount.s3files`
//! helper, against the fake mount target, with stub `mount` / `umount` programs
//! (`EFS_PROXY_MOUNT_PROGRAM`, `EFS_PROXY_UMOUNT_PROGRAM`) that record their arguments and
//! edit a fake mount table (`EFS_PROXY_MOUNTINFO`), and the state under a temporary
//! `EFS_PROXY_STATE_DIR`. Every failure class asserts its message and that no process and no
//! state is left.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use efs_proxy_tests::{
    Backend, BindBehaviour, FakeMountTarget, MountTargetConfig, Responder, ServerTls, TestPki,
};

const FS: &str = "fs-0123456789abcdef0";
const BIN: &str = env!("CARGO_BIN_EXE_efs-proxy");

const STUB_MOUNT: &str = r#"#!/bin/sh
# mount -t nfs4 -o OPTS SOURCE DIR: record, then add the mount to the fake table.
echo "$*" >> "$STUB_LOG"
[ -n "$STUB_MOUNT_FAIL" ] && { echo "mount.nfs4: access denied by server" >&2; exit 32; }
port=$(printf '%s\n' "$4" | sed 's/.*port=\([0-9]*\).*/\1/')
echo "99 1 0:99 / $6 rw,relatime - nfs4 $5 rw,vers=4.2,hard,proto=tcp,port=$port,addr=127.0.0.1" >> "$EFS_PROXY_MOUNTINFO"
"#;
const STUB_UMOUNT: &str = r#"#!/bin/sh
echo "umount $*" >> "$STUB_LOG"
grep -v " $1 " "$EFS_PROXY_MOUNTINFO" > "$EFS_PROXY_MOUNTINFO.new"
mv "$EFS_PROXY_MOUNTINFO.new" "$EFS_PROXY_MOUNTINFO"
"#;

mod failures;
mod lifecycle;
mod mount_helper;

struct Bed {
    dir: tempfile::TempDir,
    target: String,
    _rt: tokio::runtime::Runtime,
    _server: Option<FakeMountTarget>,
}

impl Bed {
    fn new(bind: BindBehaviour) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let pki = TestPki::generate(&[efs_proxy_tests::SERVER_NAME, "localhost"]).unwrap();
        pki.write(&dir.path().join("pki")).unwrap();
        let tls = Some(ServerTls {
            chain: vec![pki.server.cert_der.clone()],
            key: pki.server.private_key(),
            require_client_cert: true,
        });
        let server = rt
            .block_on(FakeMountTarget::start(
                "127.0.0.1:0".parse().unwrap(),
                MountTargetConfig {
                    tls,
                    bind,
                    backend: Backend::Responder(Responder::parse("echo").unwrap()),
                    max_record_size: efs_rpc::DEFAULT_MAX_RECORD_SIZE,
                    iam: None,
                },
            ))
            .unwrap();
        for (name, text) in [("stub-mount", STUB_MOUNT), ("stub-umount", STUB_UMOUNT)] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(dir.path().join("mountinfo"), "").unwrap();
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        Bed {
            target: server.addr().to_string(),
            dir,
            _rt: rt,
            _server: Some(server),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn state(&self) -> PathBuf {
        self.path("state")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("AWS_ACCESS_KEY_ID", "AKIDMOUNTTEST")
            .env("AWS_SECRET_ACCESS_KEY", "mountTestSecret/DoNotStore")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("EFS_PROXY_STATE_DIR", self.state())
            .env("EFS_PROXY_MOUNTINFO", self.path("mountinfo"))
            .env("EFS_PROXY_MOUNT_PROGRAM", self.path("stub-mount"))
            .env("EFS_PROXY_UMOUNT_PROGRAM", self.path("stub-umount"))
            .env("STUB_LOG", self.path("stub.log"));
        cmd
    }

    fn options(&self, extra: &str) -> String {
        format!(
            "region=us-east-1,target={},cafile={}{extra}",
            self.target,
            self.path("pki/ca.pem").display()
        )
    }

    fn mount(&self, extra: &str) -> Output {
        self.mount_command("mnt", extra).output().unwrap()
    }

    /// `efs-proxy mount FS:/ <bed>/MOUNTPOINT -o <the bed's options>EXTRA`, not yet run.
    fn mount_command(&self, mountpoint: &str, extra: &str) -> Command {
        let mut cmd = self.command(BIN);
        cmd.args([
            "mount",
            &format!("{FS}:/"),
            &self.path(mountpoint).to_string_lossy(),
        ])
        .args(["-o", &self.options(extra)]);
        cmd
    }

    /// `efs-proxy umount <bed>/MOUNTPOINT`, run.
    fn umount(&self, mountpoint: &str) -> Output {
        self.command(BIN)
            .args(["umount", &self.path(mountpoint).to_string_lossy()])
            .output()
            .unwrap()
    }

    /// A plain `umount <bed>/mnt` (the stub), as a user would run it without the proxy: it
    /// succeeds.
    fn plain_umount(&self) {
        let out = self
            .command(&self.path("stub-umount").to_string_lossy())
            .arg(self.path("mnt"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }

    /// Unmounts MOUNTPOINT, the last mount: it succeeds and leaves no process or state.
    fn umount_last(&self, mountpoint: &str) {
        let out = self.umount(mountpoint);
        assert!(out.status.success(), "{}", text(&out));
        self.assert_nothing_left();
    }

    fn mount_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.state())
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// Live processes whose command line names this bed's state directory.
    fn processes(&self) -> Vec<u32> {
        let marker = self.state().to_string_lossy().into_owned();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let zombie = stat
                    .rsplit_once(") ")
                    .is_some_and(|(_, r)| r.starts_with('Z'));
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                !zombie && String::from_utf8_lossy(&cmd).contains(&marker)
            })
            .collect()
    }

    fn assert_nothing_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline
            && !(self.processes().is_empty() && self.mount_dirs().is_empty())
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            self.processes(),
            Vec::<u32>::new(),
            "processes left running"
        );
        assert_eq!(
            self.mount_dirs(),
            Vec::<PathBuf>::new(),
            "state left behind"
        );
    }

    fn stub_log(&self) -> String {
        std::fs::read_to_string(self.path("stub.log")).unwrap_or_default()
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// SIGKILLs the proxy of the mount in `dir` and waits (15 s at most) until the supervisor's
/// new proxy has written its pid to `status.json`.
fn kill_proxy_and_await_restart(dir: &Path) {
    let old: i32 = read(&dir.join("proxy.pid")).trim().parse().unwrap();
    let killed = Command::new("kill")
        .args(["-KILL", &old.to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "kill -KILL {old}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let restarted = loop {
        let new: i32 = read(&dir.join("proxy.pid")).trim().parse().unwrap_or(old);
        if new != old && read(&dir.join("status.json")).contains(&format!("\"pid\":{new}")) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        restarted,
        "proxy not restarted: {}",
        read(&dir.join("proxy.log"))
    );
}
