//! The `efs-webdav` binary over real HTTP: Finder's metadata files stay out of the served
//! directory, large chunked uploads with `X-Expected-Entity-Length` round-trip, LOCK works
//! (Finder's condition for a writable mount), authentication, and command-line errors.
//! (The litmus suite runs against the same binary in tests/e2e/container-litmus.sh.)

mod http;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use http::{Body, all_names, pseudo_random, request, start};

const LOCK_BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>
<D:locktype><D:write/></D:locktype><D:owner>finder</D:owner></D:lockinfo>"#;

#[test]
fn finder_metadata_never_reaches_the_served_directory() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path(), &[], &[]);
    let a = server.addr;

    assert_eq!(request(a, "MKCOL", "/docs/", &[], Body::None).status, 201);
    assert_eq!(
        request(a, "PUT", "/docs/report.txt", &[], Body::Fixed(b"data")).status,
        201
    );
    // What Finder writes next to every file and in every directory it shows.
    let finder_files: [(&str, &[u8]); 4] = [
        ("/._x", b"appledouble of x"),
        ("/.DS_Store", b"root layout"),
        ("/docs/._report.txt", b"xattrs of report.txt"),
        ("/docs/.DS_Store", b"docs layout"),
    ];
    for (path, data) in finder_files {
        let r = request(a, "PUT", path, &[], Body::Chunked(data, 7));
        assert_eq!(r.status, 201, "PUT {path}: {}", r.text());
    }
    // Finder reads them back within the session.
    for (path, data) in finder_files {
        let r = request(a, "GET", path, &[], Body::None);
        assert_eq!((r.status, r.body.as_slice()), (200, data), "GET {path}");
    }
    let listing = request(a, "PROPFIND", "/docs/", &[("Depth", "1")], Body::None);
    assert_eq!(listing.status, 207);
    assert!(
        listing.text().contains("/docs/._report.txt"),
        "{}",
        listing.text()
    );
    assert!(listing.text().contains("/docs/report.txt"));

    // Nothing of it is in the served directory (the bucket).
    assert_eq!(all_names(root.path()), vec!["docs", "docs/report.txt"]);

    copy_and_move_metadata(a, root.path());
    delete_takes_held_metadata_along(a, root.path());
}

/// Overwrite, copy and move among metadata names stay in memory too; a moved directory
/// carries its held metadata; crossing between metadata and real names is refused.
fn copy_and_move_metadata(a: SocketAddr, root: &Path) {
    assert_eq!(
        request(a, "PUT", "/._x", &[], Body::Fixed(b"v2")).status,
        204
    );
    let dest = format!("http://{a}/docs/._copy");
    assert_eq!(
        request(a, "COPY", "/._x", &[("Destination", &dest)], Body::None).status,
        201
    );
    let dest = format!("http://{a}/docs/._moved");
    assert_eq!(
        request(
            a,
            "MOVE",
            "/docs/._copy",
            &[("Destination", &dest)],
            Body::None
        )
        .status,
        201
    );
    assert_eq!(
        request(a, "GET", "/docs/._moved", &[], Body::None).body,
        b"v2"
    );
    // Moving a real directory carries its held metadata along.
    let dest = format!("http://{a}/renamed/");
    assert_eq!(
        request(a, "MOVE", "/docs/", &[("Destination", &dest)], Body::None).status,
        201
    );
    assert_eq!(
        request(a, "GET", "/renamed/._report.txt", &[], Body::None).body,
        b"xattrs of report.txt"
    );
    assert_eq!(
        request(a, "GET", "/docs/._report.txt", &[], Body::None).status,
        404
    );
    // Crossing between the kinds is refused: it would put metadata into the bucket.
    let dest = format!("http://{a}/renamed/plain.txt");
    assert_eq!(
        request(a, "COPY", "/._x", &[("Destination", &dest)], Body::None).status,
        403
    );
    let dest = format!("http://{a}/._report");
    assert_eq!(
        request(
            a,
            "MOVE",
            "/renamed/report.txt",
            &[("Destination", &dest)],
            Body::None
        )
        .status,
        403
    );
    assert_eq!(all_names(root), vec!["renamed", "renamed/report.txt"]);
}

/// A metadata file needs an existing parent; DELETE of a directory removes its held files.
fn delete_takes_held_metadata_along(a: SocketAddr, root: &Path) {
    // A metadata file needs an existing parent, like any file (409 Conflict).
    assert_eq!(
        request(a, "PUT", "/nowhere/._x", &[], Body::Fixed(b"x")).status,
        409
    );
    // DELETE of the directory removes the held files with it.
    assert_eq!(
        request(a, "DELETE", "/renamed/", &[], Body::None).status,
        204
    );
    assert_eq!(
        request(a, "GET", "/renamed/._report.txt", &[], Body::None).status,
        404
    );
    assert_eq!(request(a, "DELETE", "/._x", &[], Body::None).status, 204);
    assert_eq!(request(a, "GET", "/._x", &[], Body::None).status, 404);
    assert!(all_names(root).is_empty());
}

#[test]
fn metadata_files_already_in_the_bucket_are_not_served() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join(".DS_Store"), b"from another client").unwrap();
    std::fs::write(root.path().join("._a"), b"from another client").unwrap();
    std::fs::write(root.path().join("a"), b"file").unwrap();
    let server = start(root.path(), &[], &[]);
    let a = server.addr;
    assert_eq!(request(a, "GET", "/.DS_Store", &[], Body::None).status, 404);
    let listing = request(a, "PROPFIND", "/", &[("Depth", "1")], Body::None).text();
    assert!(
        listing.contains("<D:href>/a</D:href>") || listing.contains("/a<"),
        "{listing}"
    );
    assert!(
        !listing.contains("DS_Store") && !listing.contains("._a"),
        "{listing}"
    );
    // Writing one keeps the bucket's file as it was.
    assert_eq!(
        request(a, "PUT", "/.DS_Store", &[], Body::Fixed(b"finder")).status,
        201
    );
    assert_eq!(
        std::fs::read(root.path().join(".DS_Store")).unwrap(),
        b"from another client"
    );
}

#[test]
fn metadata_memory_is_bounded() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path(), &["--metadata-limit-mib", "1"], &[]);
    let big = vec![0u8; 700 << 10];
    assert_eq!(
        request(server.addr, "PUT", "/._a", &[], Body::Fixed(&big)).status,
        201
    );
    let r = request(server.addr, "PUT", "/._b", &[], Body::Fixed(&big));
    assert_eq!(r.status, 507, "{}", r.text());
    // Freed by DELETE. (The refused PUT left `/._b` empty, as a failed PUT does on disk.)
    assert_eq!(
        request(server.addr, "DELETE", "/._a", &[], Body::None).status,
        204
    );
    assert_eq!(
        request(server.addr, "PUT", "/._b", &[], Body::Fixed(&big)).status,
        204
    );
    assert!(all_names(root.path()).is_empty());
}

#[test]
fn finder_upload_of_64_mib_round_trips() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path(), &[], &[]);
    let data = pseudo_random(64 << 20, 0x5eed);
    let len = data.len().to_string();
    // Finder: chunked transfer encoding, the size in X-Expected-Entity-Length.
    let r = request(
        server.addr,
        "PUT",
        "/big.bin",
        &[("X-Expected-Entity-Length", &len)],
        Body::Chunked(&data, 256 << 10),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(
        std::fs::read(root.path().join("big.bin")).unwrap() == data,
        "file on disk differs"
    );
    let r = request(server.addr, "GET", "/big.bin", &[], Body::None);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), data.len());
    assert!(r.body == data, "GET returned different bytes");

    // A body shorter than announced is an error, not a silently short file.
    let short = &data[..1 << 20];
    let r = request(
        server.addr,
        "PUT",
        "/short.bin",
        &[("X-Expected-Entity-Length", "2097152")],
        Body::Chunked(short, 64 << 10),
    );
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn class_2_and_a_working_lock_for_finder() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path(), &[], &[]);
    let a = server.addr;
    let r = request(a, "OPTIONS", "/", &[], Body::None);
    assert_eq!(r.status, 200);
    let dav = r.header("DAV").unwrap_or_default().replace(' ', "");
    assert!(dav.split(',').any(|c| c == "2"), "DAV: {dav}");
    assert_eq!(request(a, "PUT", "/f", &[], Body::Fixed(b"x")).status, 201);
    let lock = request(
        a,
        "LOCK",
        "/f",
        &[
            ("Timeout", "Second-600"),
            ("Content-Type", "application/xml"),
        ],
        Body::Fixed(LOCK_BODY.as_bytes()),
    );
    assert_eq!(lock.status, 200, "{}", lock.text());
    let token = lock
        .header("Lock-Token")
        .expect("Lock-Token header")
        .to_string();
    // Another client without the token cannot write; the holder can.
    assert_eq!(request(a, "PUT", "/f", &[], Body::Fixed(b"y")).status, 423);
    let cond = format!("({token})");
    assert_eq!(
        request(a, "PUT", "/f", &[("If", &cond)], Body::Fixed(b"y")).status,
        204
    );
    assert_eq!(
        request(a, "UNLOCK", "/f", &[("Lock-Token", &token)], Body::None).status,
        204
    );
    // Dead properties work (PROPPATCH), without files next to the data.
    let patch = r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:x">
        <D:set><D:prop><Z:color>blue</Z:color></D:prop></D:set></D:propertyupdate>"#;
    assert_eq!(
        request(a, "PROPPATCH", "/f", &[], Body::Fixed(patch.as_bytes())).status,
        207
    );
    let find = r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:x">
        <D:prop><Z:color/></D:prop></D:propfind>"#;
    let r = request(
        a,
        "PROPFIND",
        "/f",
        &[("Depth", "0")],
        Body::Fixed(find.as_bytes()),
    );
    assert!(r.text().contains("blue"), "{}", r.text());
    assert_eq!(all_names(root.path()), vec!["f"]);
}

#[test]
fn basic_auth_when_configured() {
    let root = tempfile::tempdir().unwrap();
    let server = start(
        root.path(),
        &[],
        &[("WEBDAV_USER", "someuser"), ("WEBDAV_PASSWORD", "somepass")],
    );
    let r = request(server.addr, "PROPFIND", "/", &[("Depth", "0")], Body::None);
    assert_eq!(r.status, 401);
    assert!(
        r.header("WWW-Authenticate")
            .unwrap_or_default()
            .starts_with("Basic")
    );
    let good = [
        ("Authorization", "Basic c29tZXVzZXI6c29tZXBhc3M="),
        ("Depth", "0"),
    ];
    assert_eq!(
        request(server.addr, "PROPFIND", "/", &good, Body::None).status,
        207
    );
    let bad = [
        ("Authorization", "Basic c29tZXVzZXI6d3Jvbmc="),
        ("Depth", "0"),
    ];
    assert_eq!(
        request(server.addr, "PROPFIND", "/", &bad, Body::None).status,
        401
    );
}

fn run_failing(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_efs-webdav"));
    cmd.args(args)
        .env_remove("WEBDAV_USER")
        .env_remove("WEBDAV_PASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn errors_name_the_problem_and_the_fix() {
    let err = run_failing(
        &["--listen", "127.0.0.1:0", "--root", "/nonexistent/mnt"],
        &[],
    );
    assert!(
        err.contains("--root /nonexistent/mnt") && err.contains("mount point"),
        "{err}"
    );
    let err = run_failing(
        &[
            "--listen",
            "127.0.0.1:0",
            "--root",
            "/nonexistent/mnt",
            "--chroot",
        ],
        &[],
    );
    assert!(
        err.contains("--chroot: cannot confine the server to --root /nonexistent/mnt")
            && err.contains("CAP_SYS_CHROOT"),
        "{err}"
    );
    let root = tempfile::tempdir().unwrap();
    let root = root.path().to_str().unwrap();
    let err = run_failing(
        &["--listen", "127.0.0.1:0", "--root", root],
        &[("WEBDAV_USER", "u")],
    );
    assert!(err.contains("WEBDAV_PASSWORD"), "{err}");
    let err = run_failing(
        &["--listen", "127.0.0.1:0", "--root", root],
        &[("WEBDAV_PASSWORD", "p")],
    );
    assert!(err.contains("WEBDAV_USER"), "{err}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = run_failing(&["--listen", &addr, "--root", root], &[]);
    assert!(err.contains("cannot listen on"), "{err}");
}

#[test]
fn sigterm_stops_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let mut server = start(root.path(), &[], &[]);
    assert_eq!(
        request(server.addr, "OPTIONS", "/", &[], Body::None).status,
        200
    );
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
