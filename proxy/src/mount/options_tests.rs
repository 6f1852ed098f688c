use super::*;

const FS: &str = "fs-0123456789abcdef0";

fn req(kind: Kind, spec: &'static str, options: &'static str) -> Request<'static> {
    Request {
        kind,
        spec,
        options,
        env_region: None,
        sloppy: false,
    }
}

fn ok(kind: Kind, options: &'static str) -> MountPlan {
    parse(req(kind, "fs-0123456789abcdef0:/data", options)).expect("valid options")
}

fn fails(kind: Kind, options: &'static str) -> String {
    parse(req(kind, "fs-0123456789abcdef0", options))
        .expect_err("invalid options")
        .0
}

#[test]
fn s3files_defaults_are_efs_utils_with_nfs_4_2_and_iam() {
    let plan = ok(Kind::S3Files, "region=us-east-1,az=use1-az1");
    assert_eq!(plan.fs_id, FS);
    assert_eq!(plan.path, "/data");
    assert!(plan.iam);
    assert_eq!(
        plan.nfs_options(20123),
        "nfsvers=4.2,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,port=20123"
    );
    assert_eq!(plan.nfs_source(), "127.0.0.1:/data");
    assert_eq!(
        plan.proxy_args(),
        [
            "--fs-id",
            FS,
            "--region",
            "us-east-1",
            "--service",
            "s3files",
            "--az-id",
            "use1-az1"
        ]
    );
}

#[test]
fn efs_defaults_to_nfs_4_1_without_iam_signature_unless_asked() {
    let plan = ok(Kind::Efs, "region=eu-west-1");
    assert!(!plan.iam);
    assert!(plan.nfs_options(1).starts_with("nfsvers=4.1,"));
    assert!(plan.proxy_args().contains(&"--no-iam".to_string()));
    let plan = ok(Kind::Efs, "tls,iam,region=eu-west-1");
    assert!(plan.iam);
    assert!(!plan.proxy_args().contains(&"--no-iam".to_string()));
}

#[test]
fn user_nfs_options_replace_the_defaults_of_their_group() {
    let plan = ok(
        Kind::S3Files,
        "region=us-east-1,az=use1-az1,soft,timeo=50,resvport,vers=4.1,ro,_netdev,x-systemd.automount",
    );
    assert_eq!(
        plan.nfs,
        [
            "rsize=1048576",
            "wsize=1048576",
            "retrans=2",
            "soft",
            "timeo=50",
            "resvport",
            "vers=4.1",
            "ro"
        ]
    );
}

#[test]
fn own_options_reach_the_proxy_arguments() {
    let plan = ok(
        Kind::S3Files,
        "region=us-east-1,target=10.0.2.2:31000,cafile=/etc/ca.pem,accesspoint=fsap-0123456789abcdef0,\
         awsprofile=prod,tlsport=20999,readytimeout=90",
    );
    assert_eq!(plan.tls_port, Some(20999));
    assert_eq!(plan.ready_timeout, Duration::from_secs(90));
    let args = plan.proxy_args().join(" ");
    assert!(args.contains("--target 10.0.2.2:31000"), "{args}");
    assert!(args.contains("--ca-file /etc/ca.pem"), "{args}");
    assert!(
        args.contains("--access-point fsap-0123456789abcdef0"),
        "{args}"
    );
    assert!(args.contains("--profile prod"), "{args}");
    let plan = ok(Kind::Efs, "region=us-east-1,mounttargetip=10.1.2.3");
    assert_eq!(plan.target.as_deref(), Some("10.1.2.3:2049"));
}

#[test]
fn the_region_may_come_from_the_environment() {
    let mut r = req(Kind::Efs, FS, "");
    r.env_region = Some("ap-south-1");
    assert_eq!(parse(r).unwrap().region, "ap-south-1");
    r.options = "region=us-west-2";
    assert_eq!(parse(r).unwrap().region, "us-west-2");
}

#[test]
fn bad_specs_are_refused_with_the_expected_form() {
    for spec in [
        "",
        "fs-xyz",
        "fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:/",
        "fs-0123456789abcdef0:data",
        "fs-0123456789abcdef0:/a\nb",
    ] {
        let e = parse(req(Kind::Efs, spec, "region=us-east-1")).expect_err(spec);
        assert!(e.0.contains(&format!("{spec:?}")), "{e}");
    }
    assert_eq!(parse_spec("fs-0123456789abcdef0:").unwrap().1, "/");
}

#[test]
fn every_bad_option_class_has_its_message() {
    let cases: &[(&str, &str)] = &[
        ("", "region= is required"),
        (
            "region=us-east-1",
            "S3 Files mount targets are per availability zone",
        ),
        ("region=mars", "region"),
        (
            "region=us-east-1,az=use1-az1,bogus",
            "unknown option \"bogus\"",
        ),
        (
            "region=us-east-1,az=use1-az1,port=2049",
            "tlsport= chooses it",
        ),
        (
            "region=us-east-1,az=use1-az1,addr=1.2.3.4",
            "set by the helper",
        ),
        (
            "region=us-east-1,az=use1-az1,proto=udp",
            "set by the helper",
        ),
        (
            "region=us-east-1,az=use1-az1,hard,soft",
            "hard and soft contradict",
        ),
        ("region=us-east-1,az=use1-az1,ro,rw", "ro and rw contradict"),
        (
            "region=us-east-1,region=us-west-2,az=use1-az1",
            "given twice with different values",
        ),
        (
            "region=us-east-1,mounttargetip=10.0.0.1,target=h:1",
            "contradict",
        ),
        (
            "region=us-east-1,az=use1-az1,nfsvers=3",
            "needs NFS 4.1 or 4.2",
        ),
        (
            "region=us-east-1,az=use1-az1,nfsvers=4.1,vers=4.2",
            "contradict",
        ),
        (
            "region=us-east-1,az=use1-az1,tlsport=0",
            "tlsport=0: expected a number",
        ),
        (
            "region=us-east-1,az=use1-az1,tlsport=70000",
            "expected a number",
        ),
        (
            "region=us-east-1,az=use1-az1,readytimeout=x",
            "expected a number",
        ),
        (
            "region=us-east-1,az=use1-az1,accesspoint=ap-1",
            "accesspoint",
        ),
        ("region=us-east-1,mounttargetip=nope", "not an IP address"),
        ("region=us-east-1,target=nohost", "expected HOST:PORT"),
        (
            "region=us-east-1,az=use1-az1,awscredsuri=/v2/x",
            "not supported",
        ),
        (
            "region=us-east-1,az=use1-az1,netns=/proc/1/ns/net",
            "not supported",
        ),
        ("region=us-east-1,az=use1-az1,iam=yes", "takes no value"),
        ("region=us-east-1,az=use1-az1,awsprofile", "needs a value"),
        ("region=us-east-1,az=use1-az1,rsize", "needs a value"),
        ("region=us-east-1,az=use1-az1,hard=1", "takes no value"),
        ("region=us-east-1,az=use1-az1,a b", "not an option name"),
        (
            "region=us-east-1,az=use1-az1,sec=sys\tx",
            "spaces or control",
        ),
        ("region=us-east-1,az=use1-az1,remount", "not supported"),
    ];
    for (options, want) in cases {
        let e = fails(Kind::S3Files, options);
        assert!(e.contains(want), "{options}: {e:?} lacks {want:?}");
    }
}

#[test]
fn sloppy_turns_unknown_options_into_warnings() {
    let mut r = req(Kind::S3Files, FS, "region=us-east-1,az=use1-az1,bogus,ocsp");
    r.sloppy = true;
    let plan = parse(r).unwrap();
    assert_eq!(plan.warnings.len(), 2);
    assert!(!plan.nfs.iter().any(|o| o == "bogus"));
}

#[test]
fn repeated_identical_options_are_fine_and_empty_tokens_ignored() {
    let plan = ok(Kind::S3Files, ",region=us-east-1,,az=use1-az1,hard,hard,");
    assert_eq!(plan.nfs.iter().filter(|o| *o == "hard").count(), 1);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_input_parses_or_errs_without_panicking(
            spec in "\\PC{0,40}",
            options in "[a-z0-9=,._:/ -]{0,80}",
            sloppy in any::<bool>(),
        ) {
            for kind in [Kind::S3Files, Kind::Efs] {
                let r = Request { kind, spec: &spec, options: &options, env_region: Some("us-east-1"), sloppy };
                if let Ok(plan) = parse(r) {
                    // What reaches mount(8) never holds a space, a control character or port=.
                    let o = plan.nfs_options(1);
                    prop_assert!(!o.chars().any(|c| c.is_whitespace() || c.is_control()));
                    prop_assert_eq!(o.matches("port=").count(), 1);
                }
            }
        }
    }
}
