//! The `efs-webdav` binary against what a web page or another NFS client could do: DNS
//! rebinding (a foreign Host), cross-site requests (a foreign Origin), symbolic links out of the
//! served root, and clients that hold connections or stall their uploads.

mod http;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use http::{Body, all_names, read_reply, request, request_to, start, start_logged, wait_for};

#[test]
fn a_foreign_host_is_refused_whatever_the_method() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("doc.txt"), b"mine").unwrap();
    let server = start(root.path(), &[], &[]);
    let (a, port) = (server.addr, server.addr.port());
    let attacker = format!("attacker.example:{port}");
    let requests: [(&str, &str, Body<'_>); 5] = [
        ("PROPFIND", "/", Body::None),
        ("GET", "/doc.txt", Body::None),
        ("PUT", "/doc.txt", Body::Fixed(b"owned")),
        ("PUT", "/new.txt", Body::Fixed(b"owned")),
        ("DELETE", "/doc.txt", Body::None),
    ];
    for (method, path, body) in requests {
        let r = request_to(a, Some(&attacker), method, path, &[("Depth", "1")], body);
        assert_eq!(r.status, 421, "{method} {path}: {}", r.text());
        assert!(
            r.text().contains("--public-port") && r.text().contains("--allow-host"),
            "the refusal names the fix: {}",
            r.text()
        );
        assert!(!r.text().contains("mine"));
    }
    assert_eq!(all_names(root.path()), vec!["doc.txt"]);
    assert_eq!(std::fs::read(root.path().join("doc.txt")).unwrap(), b"mine");

    // The right name on another port, a name without port (80), no Host at all.
    let other_port = format!("localhost:{}", port.wrapping_add(1));
    for host in [Some(other_port.as_str()), Some("localhost"), None] {
        let r = request_to(a, host, "GET", "/doc.txt", &[], Body::None);
        let want = if host.is_some() { 421 } else { 400 };
        assert_eq!(r.status, want, "Host {host:?}: {}", r.text());
    }
    // Loopback names and addresses with the right port.
    for name in ["localhost", "LocalHost", "127.0.0.1", "127.0.0.2", "[::1]"] {
        let host = format!("{name}:{port}");
        let r = request_to(a, Some(&host), "GET", "/doc.txt", &[], Body::None);
        assert_eq!((r.status, r.text().as_str()), (200, "mine"), "Host {host}");
    }
}

#[test]
fn public_port_and_extra_names_are_configurable() {
    let root = tempfile::tempdir().unwrap();
    let server = start(
        root.path(),
        &["--public-port", "18080", "--allow-host", "my-mac.local"],
        &[("WEBDAV_ALLOW_HOSTS", "nas.example,other.example")],
    );
    let a = server.addr;
    let bound = format!("localhost:{}", a.port());
    let refused = request_to(a, Some(&bound), "OPTIONS", "/", &[], Body::None);
    assert_eq!(refused.status, 421, "only the public port is this server");
    for host in ["localhost:18080", "my-mac.local:18080"] {
        let r = request_to(a, Some(host), "OPTIONS", "/", &[], Body::None);
        assert_eq!(r.status, 200, "Host {host}: {}", r.text());
    }
    // The command line wins over the environment (clap), so the variable is tried alone.
    let server = start(
        root.path(),
        &[],
        &[
            ("WEBDAV_ALLOW_HOSTS", "nas.example,other.example"),
            ("WEBDAV_PUBLIC_PORT", "18081"),
        ],
    );
    for host in ["nas.example:18081", "other.example:18081"] {
        let r = request_to(server.addr, Some(host), "OPTIONS", "/", &[], Body::None);
        assert_eq!(r.status, 200, "Host {host}: {}", r.text());
    }
}

#[test]
fn a_foreign_origin_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path(), &[], &[]);
    let a = server.addr;
    let port = a.port();
    for origin in [
        "http://attacker.example".to_string(),
        format!("http://attacker.example:{port}"),
        "null".to_string(),
        format!("https://localhost:{port}"),
        format!("http://localhost:{}", port.wrapping_add(1)),
    ] {
        let r = request(
            a,
            "PUT",
            "/planted.txt",
            &[("Origin", &origin)],
            Body::Fixed(b"x"),
        );
        assert_eq!(r.status, 403, "Origin {origin}: {}", r.text());
        assert!(r.text().contains("Origin"), "{}", r.text());
    }
    assert!(all_names(root.path()).is_empty());
    // The server's own origin (a page it served) is fine.
    for origin in [format!("http://localhost:{port}"), format!("http://{a}")] {
        let r = request(
            a,
            "PUT",
            "/same.txt",
            &[("Origin", &origin)],
            Body::Fixed(b"y"),
        );
        assert!(
            r.status == 201 || r.status == 204,
            "Origin {origin}: {}",
            r.status
        );
    }
}

/// root/ with real.txt, sub/f and links in and out; outside/ next to it with a secret.
struct Tree {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    outside: std::path::PathBuf,
}

fn tree() -> Tree {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(root.join("real.txt"), b"inside").unwrap();
    std::fs::write(root.join("sub/f"), b"in sub").unwrap();
    std::fs::write(outside.join("secret"), b"aws keys").unwrap();
    std::fs::write(outside.join("dir/inner"), b"more keys").unwrap();
    symlink(outside.join("secret"), root.join("out-file")).unwrap();
    symlink(outside.join("dir"), root.join("out-dir")).unwrap();
    symlink(outside.join("nothing"), root.join("dangling")).unwrap();
    symlink("real.txt", root.join("in-link")).unwrap();
    symlink(root.join("sub"), root.join("in-dir")).unwrap();
    Tree {
        _tmp: tmp,
        root,
        outside,
    }
}

fn outside_untouched(t: &Tree) {
    assert_eq!(
        all_names(&t.outside),
        vec!["dir", "dir/inner", "secret"],
        "nothing created or removed outside the root"
    );
    assert_eq!(
        std::fs::read(t.outside.join("secret")).unwrap(),
        b"aws keys"
    );
    assert_eq!(
        std::fs::read(t.outside.join("dir/inner")).unwrap(),
        b"more keys"
    );
}

/// Method, path, headers, body.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, String)>, Body<'a>);

/// Every method on a path through a link that leads out of the root (or to nowhere), and
/// copies and moves whose destination does.
fn escaping_requests(a: SocketAddr) -> Vec<Case<'static>> {
    let dest = |p: &str| format!("http://{a}{p}");
    vec![
        ("GET", "/out-file", vec![], Body::None),
        ("GET", "/out-dir/inner", vec![], Body::None),
        (
            "PROPFIND",
            "/out-dir/",
            vec![("Depth", "1".into())],
            Body::None,
        ),
        ("PUT", "/out-file", vec![], Body::Fixed(b"overwritten")),
        ("PUT", "/out-dir/inner", vec![], Body::Fixed(b"overwritten")),
        ("PUT", "/out-dir/new", vec![], Body::Fixed(b"planted")),
        ("PUT", "/dangling", vec![], Body::Fixed(b"planted")),
        ("MKCOL", "/out-dir/newdir/", vec![], Body::None),
        ("DELETE", "/out-dir/inner", vec![], Body::None),
        (
            "COPY",
            "/out-file",
            vec![("Destination", dest("/stolen"))],
            Body::None,
        ),
        (
            "COPY",
            "/out-dir/",
            vec![("Destination", dest("/stolen-dir/"))],
            Body::None,
        ),
        (
            "MOVE",
            "/out-dir/inner",
            vec![("Destination", dest("/stolen"))],
            Body::None,
        ),
        (
            "MOVE",
            "/real.txt",
            vec![("Destination", dest("/out-dir/planted"))],
            Body::None,
        ),
        (
            "COPY",
            "/real.txt",
            vec![("Destination", dest("/out-dir/planted"))],
            Body::None,
        ),
    ]
}

/// Every escaping request is refused and nothing outside the root is read or changed.
fn assert_escaping_requests_refused(a: SocketAddr, t: &Tree) {
    for (method, path, headers, body) in escaping_requests(a) {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let r = request(a, method, path, &headers, body);
        // 409: dav-server's "the destination's parent does not exist" (its metadata is
        // refused); 207: a collection operation with a 403 inside.
        assert!(
            matches!(r.status, 403 | 409) || r.status == 207 && r.text().contains("403"),
            "{method} {path}: {} {}",
            r.status,
            r.text()
        );
        assert!(!r.text().contains("keys"), "{method} {path}: {}", r.text());
    }
    outside_untouched(t);
}

#[test]
fn symbolic_links_out_of_the_root_are_not_followed() {
    let t = tree();
    let server = start(&t.root, &[], &[]);
    let a = server.addr;
    assert_escaping_requests_refused(a, &t);
    assert!(!t.root.join("stolen").exists() && !t.root.join("stolen-dir").exists());

    // Listings leave links out (dav-server's PROPFIND), and never show what is behind them.
    let listing = request(a, "PROPFIND", "/", &[("Depth", "1")], Body::None).text();
    assert!(
        listing.contains("/real.txt") && listing.contains("/sub/"),
        "{listing}"
    );
    for hidden in ["out-file", "out-dir", "dangling", "inner", "secret"] {
        assert!(!listing.contains(hidden), "{hidden} listed: {listing}");
    }

    // Links that stay inside the root keep working, for reading and writing.
    assert_eq!(
        request(a, "GET", "/in-link", &[], Body::None).body,
        b"inside"
    );
    assert_eq!(
        request(a, "GET", "/in-dir/f", &[], Body::None).body,
        b"in sub"
    );
    let r = request(a, "PUT", "/in-link", &[], Body::Fixed(b"via link"));
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(std::fs::read(t.root.join("real.txt")).unwrap(), b"via link");
    assert!(t.root.join("in-link").is_symlink(), "the link stays a link");
    let r = request(a, "PUT", "/in-dir/new", &[], Body::Fixed(b"n"));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(std::fs::read(t.root.join("sub/new")).unwrap(), b"n");

    // DELETE of a link removes the link itself, never its target.
    for link in ["/out-file", "/out-dir"] {
        let r = request(a, "DELETE", link, &[], Body::None);
        assert_eq!(r.status, 204, "DELETE {link}: {}", r.text());
        assert!(!t.root.join(&link[1..]).is_symlink());
    }
    outside_untouched(&t);
}

#[test]
fn with_chroot_the_kernel_keeps_every_path_inside_the_root() {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        eprintln!("skipped: --chroot needs root (CI runs as root)");
        return;
    }
    let t = tree();
    let server = start(&t.root, &["--chroot"], &[]);
    let a = server.addr;
    // The process's root directory is the served tree: whatever a link says, and however
    // the tree changes between the link check and the operation, the kernel resolves paths
    // inside it.
    let root_dir = std::fs::read_link(format!("/proc/{}/root", server.child.id())).unwrap();
    assert_eq!(root_dir, std::fs::canonicalize(&t.root).unwrap());
    assert_escaping_requests_refused(a, &t);

    // An absolute link names a path under the root: given a file there, that is served.
    let mirrored = t.root.join(t.outside.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&mirrored).unwrap();
    std::fs::write(mirrored.join("secret"), b"the bucket's own file").unwrap();
    let r = request(a, "GET", "/out-file", &[], Body::None);
    assert_eq!(r.body, b"the bucket's own file", "{}", r.text());
    assert_eq!(
        request(a, "GET", "/in-link", &[], Body::None).body,
        b"inside"
    );
    outside_untouched(&t);
}

#[test]
fn a_directory_holding_an_escaping_link_can_be_deleted() {
    let t = tree();
    symlink(t.outside.join("dir"), t.root.join("sub/escape")).unwrap();
    let server = start(&t.root, &[], &[]);
    let r = request(server.addr, "DELETE", "/sub/", &[], Body::None);
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(!t.root.join("sub").exists());
    outside_untouched(&t);
}

#[test]
fn connections_past_the_cap_wait_until_one_closes() {
    let root = tempfile::tempdir().unwrap();
    let server = start_logged(root.path(), "127.0.0.1:0", &["--max-connections", "2"], &[]);
    let a = server.addr;
    let first = TcpStream::connect(a).unwrap();
    let _second = TcpStream::connect(a).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut third = TcpStream::connect(a).unwrap();
    write!(
        third,
        "OPTIONS / HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = third.read(&mut byte);
    assert!(
        early.is_err(),
        "the third connection was served past --max-connections 2: {early:?}"
    );
    assert!(
        wait_for(5, || server.log().contains("--max-connections 2")),
        "the cap is logged: {}",
        server.log()
    );
    drop(first);
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let r = read_reply(&mut BufReader::new(third), false);
    assert_eq!(r.status, 200);
}

#[test]
fn a_stalled_upload_fails_and_releases_its_connection() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("kept.txt"), b"previous").unwrap();
    let server = start_logged(root.path(), "127.0.0.1:0", &["--body-timeout", "1"], &[]);
    let a = server.addr;
    let baseline = server.open_fds();
    for target in ["/kept.txt", "/new.bin"] {
        let mut s = TcpStream::connect(a).unwrap();
        write!(
            s,
            "PUT {target} HTTP/1.1\r\nHost: {a}\r\nContent-Length: 100000\r\n\r\n"
        )
        .unwrap();
        s.write_all(&[7u8; 1000]).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        let mut reader = BufReader::new(s);
        let r = read_reply(&mut reader, false);
        assert_eq!(r.status, 408, "{}", r.text());
        assert!(r.text().contains("--body-timeout"), "{}", r.text());
        assert!(started.elapsed() < Duration::from_secs(5));
        // The server closed the connection.
        let mut rest = Vec::new();
        assert_eq!(reader.read_to_end(&mut rest).unwrap(), 0, "{rest:?}");
    }
    assert_eq!(
        all_names(root.path()),
        vec!["kept.txt"],
        "no temporary file left"
    );
    assert_eq!(
        std::fs::read(root.path().join("kept.txt")).unwrap(),
        b"previous"
    );
    assert!(
        wait_for(5, || server.open_fds() <= baseline),
        "descriptors released: {} open, {baseline} before",
        server.open_fds()
    );
    assert!(server.log().contains("--body-timeout"), "{}", server.log());
}
