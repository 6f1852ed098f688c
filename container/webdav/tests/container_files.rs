//! Structural tests of the container's files: the Dockerfile's stages, base images and runtime
//! contents, the entrypoint's mount line and interface, and the compose file's privileges and
//! port. hadolint and shellcheck run in tests/e2e/container-static.sh; the image itself is
//! built and run by podman in tests/e2e/container-image.sh.

use std::path::PathBuf;

fn container_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One Dockerfile instruction: keyword (upper case) and its arguments, continuation lines
/// joined, comments dropped.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (current.is_empty() && trimmed.is_empty()) {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.split_whitespace().collect::<Vec<_>>().join(" "),
        });
        current.clear();
    }
    assert!(current.is_empty(), "dangling line continuation");
    out
}

/// The stages: (FROM arguments, the stage's instructions).
fn stages(instructions: &[Instruction]) -> Vec<(String, Vec<&Instruction>)> {
    let mut out: Vec<(String, Vec<&Instruction>)> = Vec::new();
    for i in instructions {
        if i.keyword == "FROM" {
            out.push((i.args.clone(), Vec::new()));
        } else if let Some(stage) = out.last_mut() {
            stage.1.push(i);
        } else {
            assert_eq!(i.keyword, "ARG", "only ARG may precede the first FROM");
        }
    }
    out
}

#[test]
fn dockerfile_is_a_two_stage_build_on_bookworm() {
    let text = container_file("Dockerfile");
    let all = parse_dockerfile(&text);
    let stages = stages(&all);
    assert_eq!(stages.len(), 2, "{stages:#?}");
    assert_eq!(stages[0].0, "rust:1-bookworm AS build");
    assert_eq!(stages[1].0, "debian:bookworm-slim AS runtime");

    let build: String = stages[0]
        .1
        .iter()
        .map(|i| format!("{} {}\n", i.keyword, i.args))
        .collect();
    assert!(
        build.contains("cargo build --release --locked -p efs-proxy -p efs-webdav"),
        "{build}"
    );
    // Rebuilds reuse the downloads and the compiled dependencies.
    for cache in [
        "--mount=type=cache,target=/usr/local/cargo/registry",
        "--mount=type=cache,target=/src/target",
    ] {
        assert!(build.contains(cache), "no {cache}: {build}");
    }
    // No debug info in the image's binaries (it was ~100 MB of the image).
    for strip in [
        "CARGO_PROFILE_RELEASE_DEBUG=false",
        "CARGO_PROFILE_RELEASE_STRIP=debuginfo",
    ] {
        assert!(
            build.contains(strip),
            "binaries not stripped ({strip}): {build}"
        );
    }
}

/// The runtime stage installs what mount.nfs needs and nothing of efs-utils, and leaves a
/// package database that images built FROM it can still use.
#[test]
fn the_runtime_stage_installs_only_what_the_mount_needs() {
    let all = parse_dockerfile(&container_file("Dockerfile"));
    let stages = stages(&all);
    let runtime = &stages[1].1;
    let runtime_text: String = runtime
        .iter()
        .map(|i| format!("{} {}\n", i.keyword, i.args))
        .collect();
    let install = runtime
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.contains("apt-get install"))
        .expect("an apt-get install in the runtime stage");
    // The packages apt-get installs: from "apt-get install" to the next "&&".
    let packages: Vec<&str> = install
        .args
        .split("apt-get install")
        .nth(1)
        .unwrap()
        .split("&&")
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    for pkg in [
        "--no-install-recommends",
        "ca-certificates",
        "tini",
        "mount",
        // mount.nfs's shared libraries (the rest are in the base image)
        "libtirpc3",
        "libgssapi-krb5-2",
    ] {
        assert!(
            packages.contains(&pkg),
            "runtime install lacks {pkg}: {packages:?}"
        );
    }
    assert!(
        install.args.contains("rm -rf /var/lib/apt/lists/*"),
        "apt lists not cleaned"
    );
    // mount.nfs comes from nfs-common's .deb without installing the package: the package
    // depends on python3, and purging python3 with --force-depends broke `apt-get check`
    // (images FROM this one could not install packages).
    assert!(
        !packages.contains(&"nfs-common"),
        "nfs-common installed as a package (it pulls in python3): {packages:?}"
    );
    for step in [
        "apt-get download nfs-common",
        "dpkg-deb -x nfs-common_*.deb",
        "install -m 0755 pkg/sbin/mount.nfs /usr/sbin/mount.nfs",
        "ln -s mount.nfs /usr/sbin/mount.nfs4",
        "! ldd /usr/sbin/mount.nfs | grep 'not found'",
    ] {
        assert!(
            install.args.contains(step),
            "missing {step:?}: {}",
            install.args
        );
    }
    assert!(
        all.iter().all(|i| !i.args.contains("--force-depends")),
        "dpkg --force-depends leaves broken dependencies"
    );
    for banned in [
        "amazon-efs-utils",
        "efs-utils",
        "stunnel",
        "pip install",
        "python3 -m",
    ] {
        assert!(
            !runtime_text.contains(banned),
            "runtime stage mentions {banned}"
        );
    }
    for banned in ["amazon-efs-utils", "stunnel4", "efs-utils"] {
        assert!(!install.args.contains(banned), "installs {banned}");
    }
}

/// The runtime stage copies both binaries and the entrypoint, runs under tini as root (the
/// NFS mount needs CAP_SYS_ADMIN), exposes 8080 and has a healthcheck.
#[test]
fn the_runtime_stage_runs_the_entrypoint_under_tini() {
    let all = parse_dockerfile(&container_file("Dockerfile"));
    let stages = stages(&all);
    let runtime = &stages[1].1;
    let copies: Vec<&str> = runtime
        .iter()
        .filter(|i| i.keyword == "COPY")
        .map(|i| i.args.as_str())
        .collect();
    assert!(
        copies.iter().any(|c| c.starts_with("--from=build")
            && c.contains("efs-proxy")
            && c.contains("efs-webdav")),
        "binaries not copied from the build stage: {copies:?}"
    );
    assert!(
        copies.iter().any(|c| c.contains("container/entrypoint.sh")),
        "{copies:?}"
    );

    let one = |kw: &str| -> String {
        let found: Vec<_> = runtime.iter().filter(|i| i.keyword == kw).collect();
        assert_eq!(
            found.len(),
            1,
            "exactly one {kw} in the runtime stage: {found:?}"
        );
        found[0].args.clone()
    };
    assert_eq!(one("EXPOSE"), "8080");
    assert_eq!(
        one("ENTRYPOINT"),
        r#"["/usr/bin/tini", "--", "/usr/local/bin/entrypoint.sh"]"#,
        "exec form, tini as PID 1"
    );
    let health = one("HEALTHCHECK");
    assert!(
        health.contains(r#"CMD ["/usr/local/bin/entrypoint.sh", "health"]"#),
        "{health}"
    );
    // The runtime stage's last WORKDIR is / again (it uses /tmp/nfs-common while unpacking).
    let workdir = runtime.iter().rev().find(|i| i.keyword == "WORKDIR");
    assert_eq!(workdir.map(|i| i.args.as_str()), Some("/"));
    // No USER root drop: the NFS mount needs root (CAP_SYS_ADMIN) inside the container.
    assert!(runtime.iter().all(|i| i.keyword != "USER"));
}

#[test]
fn dockerignore_keeps_the_context_small() {
    let text = container_file("Dockerfile.dockerignore");
    for entry in [".git", "target", "**/node_modules"] {
        assert!(text.lines().any(|l| l.trim() == entry), "missing {entry}");
    }
}

#[test]
fn entrypoint_mounts_exactly_as_documented() {
    let text = container_file("entrypoint.sh");
    assert!(
        text.starts_with("#!/bin/sh\n"),
        "POSIX sh (dash in the image, busybox in tests)"
    );
    let mount = "mount -t nfs4 -o nfsvers=4.2,port=20049,hard,timeo=600,retrans=2,noresvport,\
                 rsize=1048576,wsize=1048576 127.0.0.1:/ \"$MOUNT_POINT\"";
    assert!(text.contains(mount), "the mount line changed");
    assert!(text.contains("MOUNT_POINT=${MOUNT_POINT:-/mnt/s3files}"));
    assert!(text.contains("PROXY_LISTEN=127.0.0.1:20049"));
    for flag in ["--target", "--fs-id", "--region", "--az-id", "--service"] {
        assert!(text.contains(flag), "native proxy flag {flag}");
    }
    for knob in [
        "EFS_PROXY_ARGS",
        "WEBDAV_LISTEN",
        "NLB_DNS",
        "FS_ID",
        "AZ_ID",
        "AWS_REGION",
    ] {
        assert!(text.contains(knob), "{knob}");
    }
    assert!(
        text.contains("--listen \"$WEBDAV_LISTEN\" --root \"$MOUNT_POINT\""),
        "efs-webdav CLI"
    );
    assert!(text.contains("trap 'on_signal SIGTERM' TERM"));
    assert!(text.contains("umount -l"), "lazy unmount when busy");
    assert!(
        text.contains("'^listening on '"),
        "waits for the proxy's ready line"
    );
}

#[test]
fn compose_grants_the_mount_and_publishes_loopback_only() {
    let text = container_file("docker-compose.yml");
    assert!(text.contains("dockerfile: container/Dockerfile"));
    assert!(text.contains("context: .."));
    assert!(
        text.contains("- SYS_ADMIN"),
        "needs CAP_SYS_ADMIN for the NFS mount"
    );
    assert!(
        text.contains("\"127.0.0.1:${WEBDAV_PORT:-8080}:8080\""),
        "WebDAV on loopback only"
    );
    assert!(text.contains(":/root/.aws:ro"), "~/.aws read-only");
    let privileged = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .any(|l| l.contains("privileged"));
    assert!(!privileged, "no --privileged by default");
}

#[test]
fn docker_mount_has_every_command() {
    let text = container_file("docker-mount.sh");
    for cmd in ["up)", "down)", "shell)", "ls)", "cp)", "status)"] {
        assert!(text.contains(&format!("  {cmd}")), "command {cmd}");
    }
    for needle in [
        "mount_webdav",
        "DSDontWriteNetworkStores",
        "cdk-outputs.json",
        "describe-stacks",
    ] {
        assert!(text.contains(needle), "{needle}");
    }
}

#[test]
fn parser_handles_continuations_and_comments() {
    let parsed = parse_dockerfile("# c\nFROM a AS b\nRUN x \\\n  # inner\n  && y\n\nEXPOSE 1\n");
    assert_eq!(parsed.len(), 3);
    assert_eq!(parsed[1].keyword, "RUN");
    assert_eq!(parsed[1].args, "x && y");
}
