//! The `mount.s3files` helper (mount(8) arguments) and `install-mount-helper`.

use super::*;

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
    bed.umount_last("mnt");
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
