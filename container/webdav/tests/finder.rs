//! The `efs-webdav` binary as Finder uses it: uploads that fail halfway leave no partial object
//! (every file in the mount becomes an S3 object), the quota properties Finder reads for free
//! space, Finder's `Icon\r` and `.localized` files, and the start-up warning about
//! authentication.

mod http;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use http::{Body, all_names, request, start, start_logged, wait_for};

/// Sizes of the files directly in `dir` other than `except`.
fn others_written(dir: &Path, except: &str) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let e = e.unwrap();
        e.file_name() != except && e.metadata().is_ok_and(|m| m.len() > 0)
    })
}

#[test]
fn a_short_chunked_upload_leaves_no_partial_object() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("old.bin"), b"previous content").unwrap();
    let server = start(root.path(), &[], &[]);
    let data = vec![5u8; 1 << 20];
    for path in ["/new.bin", "/old.bin"] {
        // Finder's framing: chunked, the size announced in X-Expected-Entity-Length; the body
        // ends (properly) after half of it.
        let r = request(
            server.addr,
            "PUT",
            path,
            &[("X-Expected-Entity-Length", "2097152")],
            Body::Chunked(&data, 64 << 10),
        );
        assert_eq!(r.status, 400, "{path}: {}", r.text());
    }
    assert_eq!(all_names(root.path()), vec!["old.bin"]);
    assert_eq!(
        std::fs::read(root.path().join("old.bin")).unwrap(),
        b"previous content"
    );
    // The complete upload replaces the file, keeping its mode.
    std::fs::set_permissions(
        root.path().join("old.bin"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let r = request(
        server.addr,
        "PUT",
        "/old.bin",
        &[("X-Expected-Entity-Length", "1048576")],
        Body::Chunked(&data, 64 << 10),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(std::fs::read(root.path().join("old.bin")).unwrap() == data);
    let mode = std::fs::metadata(root.path().join("old.bin"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(all_names(root.path()), vec!["old.bin"]);
}

/// Sends the head and part of a body, waits until the server wrote some of it, and hangs up.
fn upload_and_hang_up(root: &Path, addr: std::net::SocketAddr, head: &str, part: &[u8]) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(part).unwrap();
    s.flush().unwrap();
    let written = wait_for(10, || {
        others_written(root, "old.bin")
            || std::fs::read(root.join("old.bin")).is_ok_and(|c| c != b"previous content")
    });
    assert!(written, "the server never wrote the partial body");
    drop(s);
}

#[test]
fn a_client_that_hangs_up_mid_body_leaves_no_partial_object() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path(), &[], &[]);
    let a = server.addr;
    std::fs::write(root.path().join("old.bin"), b"previous content").unwrap();
    let part = vec![9u8; 256 << 10];
    for target in ["/new.bin", "/old.bin"] {
        let fixed =
            format!("PUT {target} HTTP/1.1\r\nHost: {a}\r\nContent-Length: 4194304\r\n\r\n");
        upload_and_hang_up(root.path(), a, &fixed, &part);
        let clean = || {
            all_names(root.path()) == ["old.bin"]
                && std::fs::read(root.path().join("old.bin")).unwrap() == b"previous content"
        };
        assert!(
            wait_for(10, clean),
            "{target}: {:?}",
            all_names(root.path())
        );

        let chunked = format!(
            "PUT {target} HTTP/1.1\r\nHost: {a}\r\nTransfer-Encoding: chunked\r\n\
             X-Expected-Entity-Length: 4194304\r\n\r\n{:x}\r\n",
            4194304
        );
        upload_and_hang_up(root.path(), a, &chunked, &part);
        assert!(
            wait_for(10, clean),
            "{target}: {:?}",
            all_names(root.path())
        );
    }
}

#[test]
fn upload_temporary_names_are_hidden_and_refused() {
    let root = tempfile::tempdir().unwrap();
    // One left behind by a killed server.
    let stale = ".efs-webdav-put-1-0";
    std::fs::write(root.path().join(stale), b"partial").unwrap();
    let server = start(root.path(), &[], &[]);
    let a = server.addr;
    let listing = request(a, "PROPFIND", "/", &[("Depth", "1")], Body::None);
    assert_eq!(listing.status, 207);
    assert!(!listing.text().contains(stale), "{}", listing.text());
    let path = format!("/{stale}");
    assert_eq!(request(a, "GET", &path, &[], Body::None).status, 403);
    assert_eq!(request(a, "PUT", &path, &[], Body::Fixed(b"x")).status, 403);
    let r = request(a, "PUT", "/a", &[], Body::Fixed(b"x"));
    assert_eq!(r.status, 201);
    let dest = format!("http://{a}/.efs-webdav-put-2-0");
    let r = request(a, "MOVE", "/a", &[("Destination", &dest)], Body::None);
    assert_eq!(r.status, 403);
    assert_eq!(all_names(root.path()), vec![stale.to_string(), "a".into()]);
}

/// The number in `<D:NAME>…</D:NAME>` (any prefix) of a PROPFIND answer.
fn number(xml: &str, name: &str) -> u64 {
    let start = xml
        .find(&format!("{name}>"))
        .unwrap_or_else(|| panic!("no {name} in {xml}"))
        + name.len()
        + 1;
    let end = start + xml[start..].find('<').unwrap();
    xml[start..end].trim().parse().unwrap()
}

#[test]
fn quota_properties_come_from_statvfs() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path(), &[], &[]);
    let body = r#"<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:quota-available-bytes/><D:quota-used-bytes/></D:prop></D:propfind>"#;
    for agent in ["litmus", "WebDAVFS/3.0.0 (03008000) Darwin/22.1.0"] {
        let r = request(
            server.addr,
            "PROPFIND",
            "/",
            &[("Depth", "0"), ("User-Agent", agent)],
            Body::Fixed(body.as_bytes()),
        );
        assert_eq!(r.status, 207, "{}", r.text());
        let xml = r.text();
        assert!(xml.contains("200 OK") && !xml.contains("404"), "{xml}");
        let available = number(&xml, "quota-available-bytes");
        let used = number(&xml, "quota-used-bytes");
        let st = rustix::fs::statvfs(root.path()).unwrap();
        let want_available = st.f_bavail * st.f_frsize;
        let want_used = (st.f_blocks - st.f_bfree) * st.f_frsize;
        // Other processes write to the same file system meanwhile.
        let slack = 256 << 20;
        assert!(
            available.abs_diff(want_available) < slack,
            "{available} vs {want_available}"
        );
        assert!(used.abs_diff(want_used) < slack, "{used} vs {want_used}");
        assert!(available > 0 && used > 0);
    }
}

#[test]
fn icon_and_localized_are_held_in_memory() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path(), &[], &[]);
    let a = server.addr;
    // A Finder copy of a folder with a custom icon and a localized name.
    assert_eq!(request(a, "MKCOL", "/Folder/", &[], Body::None).status, 201);
    let files: [(&str, &[u8]); 4] = [
        ("/Folder/Icon%0D", b""),
        ("/Folder/._Icon%0D", b"icon resource fork"),
        ("/Folder/.localized", b""),
        ("/Folder/photo.jpg", b"jpeg"),
    ];
    for (path, data) in files {
        let r = request(a, "PUT", path, &[], Body::Chunked(data, 7));
        assert_eq!(r.status, 201, "PUT {path}: {}", r.text());
    }
    for (path, data) in files {
        let r = request(a, "GET", path, &[], Body::None);
        assert_eq!((r.status, r.body.as_slice()), (200, data), "GET {path}");
    }
    let listing = request(a, "PROPFIND", "/Folder/", &[("Depth", "1")], Body::None).text();
    assert!(
        listing.contains("Icon%0D") || listing.contains("Icon\r"),
        "{listing}"
    );
    assert_eq!(all_names(root.path()), vec!["Folder", "Folder/photo.jpg"]);
    assert_eq!(
        request(a, "DELETE", "/Folder/", &[], Body::None).status,
        204
    );
    assert!(all_names(root.path()).is_empty());
}

/// Starts the server with `listen` and `env`, and returns its log once it listens.
fn startup_log(listen: &str, env: &[(&str, &str)]) -> String {
    let root = tempfile::tempdir().unwrap();
    let server = start_logged(root.path(), listen, &[], env);
    std::thread::sleep(Duration::from_millis(100));
    server.log()
}

#[test]
fn the_authentication_warning_only_when_true() {
    const WARNING: &str = "without authentication";
    let auth = [("WEBDAV_USER", "s3files"), ("WEBDAV_PASSWORD", "secret")];
    let log = startup_log("0.0.0.0:0", &[]);
    assert!(log.contains(WARNING), "no password, all addresses: {log}");
    let log = startup_log("0.0.0.0:0", &auth);
    assert!(!log.contains(WARNING), "with a password: {log}");
    let log = startup_log("127.0.0.1:0", &[]);
    assert!(!log.contains(WARNING), "loopback only: {log}");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "from-a-file\n").unwrap();
    let root = tempfile::tempdir().unwrap();
    let server = start_logged(
        root.path(),
        "0.0.0.0:0",
        &["--password-file", file.path().to_str().unwrap()],
        &[("WEBDAV_USER", "s3files")],
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(!server.log().contains(WARNING), "{}", server.log());
    // base64("s3files:from-a-file")
    let good = [
        ("Authorization", "Basic czNmaWxlczpmcm9tLWEtZmlsZQ=="),
        ("Depth", "0"),
    ];
    assert_eq!(
        request(server.addr, "PROPFIND", "/", &good, Body::None).status,
        207
    );
    assert_eq!(
        request(server.addr, "PROPFIND", "/", &[], Body::None).status,
        401
    );
}
