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

#[test]
fn mount_starts_a_supervised_proxy_and_umount_leaves_nothing() {
    let bed = Bed::new(BindBehaviour::ready(0x5a));
    let out = bed.mount("");
    assert!(out.status.success(), "{}", text(&out));
    let dirs = bed.mount_dirs();
    assert_eq!(dirs.len(), 1);
    let dir = &dirs[0];
    let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let info: serde_json::Value = serde_json::from_str(&read(&dir.join("mount.json"))).unwrap();
    let port = info["port"].as_u64().unwrap();
    let mnt = bed.path("mnt");
    assert_eq!(
        bed.stub_log().trim(),
        format!(
            "-t nfs4 -o nfsvers=4.2,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,port={port} 127.0.0.1:/ {}",
            mnt.display()
        )
    );
    let status = read(&dir.join("status.json"));
    assert!(status.contains("\"state\":\"ready\""), "{status}");
    assert!(
        status.contains("\"partition\":\"5a5a5a5a5a5a5a5a\""),
        "{status}"
    );
    for file in ["mount.json", "status.json", "proxy.log"] {
        assert!(
            !read(&dir.join(file)).contains("mountTestSecret"),
            "secret in {file}"
        );
    }
    assert_eq!(bed.processes().len(), 2, "supervisor and proxy");

    // The listing.
    let out = bed.command(BIN).args(["mounts"]).output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listing.contains(&format!("{FS}:/")) && listing.contains("5a5a5a5a5a5a5a5a"),
        "{listing}"
    );

    // A second mount on the same mount point is refused.
    let again = bed.mount("");
    assert_eq!(again.status.code(), Some(32));
    assert!(
        text(&again).contains("already mounted through efs-proxy"),
        "{}",
        text(&again)
    );

    // A killed proxy is restarted on the same port.
    kill_proxy_and_await_restart(dir);
    let probe = std::net::TcpStream::connect(("127.0.0.1", port as u16));
    assert!(probe.is_ok(), "the port closed");

    let out = bed
        .command(BIN)
        .args(["umount", &mnt.to_string_lossy()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        bed.stub_log()
            .contains(&format!("umount {}", mnt.display()))
    );
    bed.assert_nothing_left();
}

/// The mount's log lives in /run (memory) for as long as the mount: it rotates by size, one
/// rotated file kept, however much the daemons log (here: a start, a killed proxy and its
/// restart, with the limit lowered through `EFS_PROXY_MOUNT_LOG_MAX_BYTES`).
#[test]
fn the_mount_log_rotates_by_size() {
    const MAX: u64 = 300;
    let bed = Bed::new(BindBehaviour::ready(0x5a));
    let out = bed
        .mount_command("mnt", "")
        .env("EFS_PROXY_MOUNT_LOG_MAX_BYTES", MAX.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let dir = bed.mount_dirs().remove(0);
    kill_proxy_and_await_restart(&dir);
    let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
    // A file passes the limit by at most the line that made it rotate.
    let line = 1024;
    assert!(
        size("proxy.log.0") > 0,
        "never rotated: {}",
        read(&dir.join("proxy.log"))
    );
    assert!(
        size("proxy.log") <= MAX + line,
        "proxy.log: {} bytes",
        size("proxy.log")
    );
    assert!(
        size("proxy.log.0") <= MAX + line,
        "proxy.log.0: {} bytes",
        size("proxy.log.0")
    );
    assert!(
        !dir.join("proxy.log.1").exists(),
        "more than one rotated file"
    );

    let mnt = bed.path("mnt").to_string_lossy().into_owned();
    let out = bed.command(BIN).args(["umount", &mnt]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    bed.assert_nothing_left();
}

#[test]
fn a_plain_umount_stops_the_proxy_after_the_grace_period() {
    let bed = Bed::new(BindBehaviour::ready(0x5a));
    let out = bed.mount("");
    assert!(out.status.success(), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(1500)); // the watch sees the mount
    let out = bed
        .command(&bed.path("stub-umount").to_string_lossy())
        .arg(bed.path("mnt"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let start = Instant::now();
    while !bed.mount_dirs().is_empty() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "gone before the grace period: {took:?}"
    );
    bed.assert_nothing_left();
}

#[test]
fn umount_then_mount_at_once_replaces_the_lingering_proxy() {
    let bed = Bed::new(BindBehaviour::ready(0x5a));
    assert!(bed.mount("").status.success());
    let first = bed.mount_dirs();
    let out = bed
        .command(&bed.path("stub-umount").to_string_lossy())
        .arg(bed.path("mnt"))
        .output()
        .unwrap();
    assert!(out.status.success());
    // Within the grace period: the old proxy still runs, the mount is gone.
    let out = bed.mount("");
    assert!(out.status.success(), "{}", text(&out));
    let second = bed.mount_dirs();
    assert_eq!(second.len(), 1);
    assert_ne!(first, second, "a new proxy serves the new mount");
    assert_eq!(bed.processes().len(), 2, "the lingering proxy was stopped");
    let out = bed
        .command(BIN)
        .args(["umount", &bed.path("mnt").to_string_lossy()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    bed.assert_nothing_left();
}

#[test]
fn the_helper_name_selects_the_type_and_mount_8_arguments_work() {
    let bed = Bed::new(BindBehaviour::ready(0x5a));
    let helper = bed.path("mount.s3files");
    std::os::unix::fs::symlink(BIN, &helper).unwrap();
    let out = bed
        .command(&helper.to_string_lossy())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("mount.s3files"),
        "{}",
        text(&out)
    );
    let out = bed
        .command(&helper.to_string_lossy())
        .args([
            &format!("{FS}:/"),
            &*bed.path("mnt").to_string_lossy(),
            "-nv",
        ])
        .args(["-o", &format!("rw,_netdev,{}", bed.options(""))])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(bed.stub_log().contains("nfsvers=4.2,") && bed.stub_log().contains(",rw,port="));
    let out = bed
        .command(BIN)
        .args(["umount", &bed.path("mnt").to_string_lossy()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    bed.assert_nothing_left();
}

/// Mounts that fail: the message, the exit status, and nothing left behind.
fn assert_fails(bed: &Bed, out: &Output, code: i32, wants: &[&str]) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(code), "{all}");
    for want in wants {
        assert!(all.contains(want), "{want:?} missing:\n{all}");
    }
    bed.assert_nothing_left();
}

#[test]
fn bad_options_fail_before_anything_starts() {
    let bed = Bed::new(BindBehaviour::ready(0x5a));
    let out = bed.mount(",bogus");
    assert_fails(&bed, &out, 1, &["unknown option \"bogus\""]);
    let out = bed.mount(",hard,soft");
    assert_fails(&bed, &out, 1, &["hard and soft contradict"]);
    let out = bed.mount(",port=2049");
    assert_fails(&bed, &out, 1, &["tlsport= chooses it"]);
    assert!(bed.stub_log().is_empty(), "mount ran");
    let out = bed
        .command(BIN)
        .args(["mount", FS, "/no/such/dir", "-o", &bed.options("")])
        .output()
        .unwrap();
    assert_fails(&bed, &out, 32, &["mount point /no/such/dir"]);
}

#[test]
fn an_untrusted_server_is_diagnosed_and_nothing_mounted() {
    let bed = Bed::new(BindBehaviour::ready(0x5a));
    let other = TestPki::generate(&["other"]).unwrap();
    other.write(&bed.path("other")).unwrap();
    let out = bed.mount(&format!(",cafile={}", bed.path("other/ca.pem").display()));
    // cafile= twice with different values is itself an error; use the other CA alone.
    assert_fails(&bed, &out, 1, &["given twice"]);
    let opts = format!(
        "region=us-east-1,target={},cafile={},readytimeout=20",
        bed.target,
        bed.path("other/ca.pem").display()
    );
    let out = bed
        .command(BIN)
        .args(["mount", FS, &bed.path("mnt").to_string_lossy(), "-o", &opts])
        .output()
        .unwrap();
    assert_fails(
        &bed,
        &out,
        32,
        &["was not ready", "diagnosis (efs-proxy check)", "✗ tls"],
    );
    assert!(bed.stub_log().is_empty(), "mount ran");
}

#[test]
fn an_unreachable_target_and_a_refused_bind_are_diagnosed() {
    let bed = Bed::new(BindBehaviour::parse("error").unwrap());
    let out = bed.mount(",readytimeout=20");
    assert_fails(&bed, &out, 32, &["was not ready", "✗ bind"]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let opts = format!("region=us-east-1,target=127.0.0.1:{port},readytimeout=20");
    let out = bed
        .command(BIN)
        .args(["mount", FS, &bed.path("mnt").to_string_lossy(), "-o", &opts])
        .output()
        .unwrap();
    assert_fails(&bed, &out, 32, &["was not ready", "✗ tcp"]);
}

#[test]
fn a_silent_target_times_out_missing_credentials_and_a_failed_nfs_mount_clean_up() {
    let bed = Bed::new(BindBehaviour::ready(0x5a));
    // Accepts TCP, never speaks TLS.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let opts = format!(
        "region=us-east-1,target={},readytimeout=2",
        silent.local_addr().unwrap()
    );
    let out = bed
        .command(BIN)
        .args(["mount", FS, &bed.path("mnt").to_string_lossy(), "-o", &opts])
        .output()
        .unwrap();
    assert_fails(&bed, &out, 32, &["no READY bind within 2 s"]);
    drop(silent);

    let out = bed
        .command(BIN)
        .args([
            "mount",
            FS,
            &bed.path("mnt").to_string_lossy(),
            "-o",
            &bed.options(""),
        ])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert_fails(&bed, &out, 32, &["no AWS credentials"]);

    let out = bed
        .command(BIN)
        .args([
            "mount",
            FS,
            &bed.path("mnt").to_string_lossy(),
            "-o",
            &bed.options(""),
        ])
        .env("STUB_MOUNT_FAIL", "1")
        .output()
        .unwrap();
    assert_fails(
        &bed,
        &out,
        32,
        &["access denied by server", "the proxy was stopped"],
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = bed.mount(&format!(",tlsport={port}"));
    assert_fails(
        &bed,
        &out,
        32,
        &[&format!("cannot listen on 127.0.0.1:{port}")],
    );
}

#[test]
fn install_mount_helper_never_replaces_another_helper_without_force() {
    let bed = Bed::new(BindBehaviour::ready(0x5a));
    let sbin = bed.path("sbin");
    std::fs::create_dir(&sbin).unwrap();
    std::fs::write(sbin.join("mount.efs"), "#!/bin/sh\n# amazon-efs-utils\n").unwrap();
    let install = |extra: &[&str]| {
        bed.command(BIN)
            .args(["install-mount-helper", "--dir", &sbin.to_string_lossy()])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = install(&["--as", "s3files,efs"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("mount.efs exists and is another program"));
    assert!(
        !sbin.join("mount.s3files").exists(),
        "nothing is changed on refusal"
    );
    let out = install(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let target = std::fs::canonicalize(sbin.join("mount.s3files")).unwrap();
    assert_eq!(target, std::fs::canonicalize(BIN).unwrap());
    assert!(text(&install(&[])).contains("already runs"));
    assert!(read(&sbin.join("mount.efs")).contains("amazon-efs-utils"));
    assert!(install(&["--as", "efs", "--force"]).status.success());
    assert_eq!(
        std::fs::canonicalize(sbin.join("mount.efs")).unwrap(),
        target
    );
}

#[test]
fn a_second_mount_of_the_same_file_system_shares_its_proxy() {
    let bed = Bed::new(BindBehaviour::ready(0x5a));
    std::fs::create_dir(bed.path("mnt2")).unwrap();
    assert!(bed.mount("").status.success());
    let out = bed.mount_command("mnt2", "").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(bed.mount_dirs().len(), 1, "one proxy for both");
    let ports: Vec<String> = bed
        .stub_log()
        .lines()
        .map(|l| {
            l.split("port=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ports.len(), 2);
    assert_eq!(ports[0], ports[1]);
    let listing = bed.command(BIN).arg("mounts").output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(
        listing.contains("mnt,") || listing.contains("mnt2,"),
        "{listing}"
    );
    let out = bed
        .command(BIN)
        .args(["umount", &bed.path("mnt").to_string_lossy()])
        .output()
        .unwrap();
    assert!(
        text(&out).contains("still serves other mounts"),
        "{}",
        text(&out)
    );
    assert_eq!(bed.processes().len(), 2);
    let out = bed
        .command(BIN)
        .args(["umount", &bed.path("mnt2").to_string_lossy()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    bed.assert_nothing_left();
}
