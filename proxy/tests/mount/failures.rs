//! Mounts that fail: bad options, an untrusted server, an unreachable target, a refused bind,
//! a silent target, missing credentials, a failed NFS mount, a taken port; nothing left.

use super::*;

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
    let out = mount_by_id(&bed, &opts).output().unwrap();
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
    let out = mount_by_id(&bed, &opts).output().unwrap();
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
    let out = mount_by_id(&bed, &opts).output().unwrap();
    assert_fails(&bed, &out, 32, &["no READY bind within 2 s"]);
    drop(silent);

    let out = mount_by_id(&bed, &bed.options(""))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert_fails(&bed, &out, 32, &["no AWS credentials"]);

    let out = mount_by_id(&bed, &bed.options(""))
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

/// `efs-proxy mount FS <bed>/mnt -o OPTIONS`, the file system named by its id alone, not yet
/// run.
fn mount_by_id(bed: &Bed, options: &str) -> Command {
    let mut cmd = bed.command(BIN);
    cmd.args(["mount", FS, &bed.path("mnt").to_string_lossy()])
        .args(["-o", options]);
    cmd
}
