//! A mount's life: a supervised proxy started and restarted, its log rotated, stopped by
//! umount (with a grace period after a plain one), replaced, shared by a second mount.

use super::*;

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

    let out = bed.umount("mnt");
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

    bed.umount_last("mnt");
}

#[test]
fn a_plain_umount_stops_the_proxy_after_the_grace_period() {
    let bed = Bed::new(BindBehaviour::ready(0x5a));
    let out = bed.mount("");
    assert!(out.status.success(), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(1500)); // the watch sees the mount
    bed.plain_umount();
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
    bed.plain_umount();
    // Within the grace period: the old proxy still runs, the mount is gone.
    let out = bed.mount("");
    assert!(out.status.success(), "{}", text(&out));
    let second = bed.mount_dirs();
    assert_eq!(second.len(), 1);
    assert_ne!(first, second, "a new proxy serves the new mount");
    assert_eq!(bed.processes().len(), 2, "the lingering proxy was stopped");
    bed.umount_last("mnt");
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
    let out = bed.umount("mnt");
    assert!(
        text(&out).contains("still serves other mounts"),
        "{}",
        text(&out)
    );
    assert_eq!(bed.processes().len(), 2);
    bed.umount_last("mnt2");
}
