//! Every step passes: the all-✓ run with an IAM certificate and an NFS NULL call, and the
//! `--json` report (and a failure in JSON).

use super::*;

#[tokio::test]
async fn every_step_passes_with_an_iam_certificate_and_an_nfs_null_call() {
    let world = iam_bed().await;
    let out = check(&iam_args(&world, &["--nfs-null"]), &env(&world, true)).await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    for step in STEPS {
        assert!(out.line(step).starts_with("✓ "), "{}", out.all());
    }
    assert!(
        out.line("credentials")
            .contains("environment: access key AKIDEXAMPLE")
    );
    assert!(
        out.line("credentials")
            .contains("with session token (not shown)")
    );
    assert!(
        out.line("credentials")
            .contains("no expiry (long-term keys)")
    );
    assert!(
        out.line("tls")
            .contains(&format!("name {SERVER_NAME} verified"))
    );
    let cert = out.line("client-cert");
    assert!(cert.contains(&format!("file system {FS}")), "{cert}");
    assert!(
        cert.contains("SigV4 by access key AKIDEXAMPLE, signed at "),
        "{cert}"
    );
    assert!(cert.contains("for s3files in us-east-1"), "{cert}");
    let bind = out.line("bind");
    assert!(
        bind.contains("READY on partition 5a5a5a5a5a5a5a5a"),
        "{bind}"
    );
    assert!(
        bind.contains("scale-up: up to 5 connections above 300 MiB/s"),
        "{bind}"
    );
    assert!(out.line("nfs-null").contains("NFS v4 NULL answered"));
    assert!(
        out.stdout
            .contains("all checks passed (8 passed, 0 skipped)")
    );
    out.assert_no_secrets();
    let seen = world.target.observations();
    assert_eq!(
        seen.iam_accepted, 1,
        "the fake target verified the certificate"
    );
    assert_eq!(seen.records, 1, "one NFS NULL call after the bind");
}

#[tokio::test]
async fn json_report_parses_and_carries_each_steps_facts() {
    let world = iam_bed().await;
    let out = check(
        &iam_args(&world, &["--nfs-null", "--json"]),
        &env(&world, true),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(report["ok"], true);
    assert_eq!(report["problem"], serde_json::Value::Null);
    assert_eq!(
        report["server_name"],
        format!("{FS}.s3files.{REGION}.on.aws")
    );
    let steps = report["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(names, STEPS);
    for step in steps {
        assert_eq!(step["status"], "pass", "{step}");
        assert!(step["ms"].as_f64().is_some(), "{step}");
    }
    let by = |name: &str| steps.iter().find(|s| s["step"] == name).unwrap();
    assert_eq!(by("credentials")["data"]["source"], "environment");
    assert_eq!(by("credentials")["data"]["access_key_id"], AKID);
    assert_eq!(by("credentials")["data"]["session_token"], true);
    assert_eq!(
        by("dns")["data"]["addresses"][0],
        world.target.addr().to_string()
    );
    assert!(
        by("tls")["data"]["protocol"]
            .as_str()
            .unwrap()
            .starts_with("TLSv1_")
    );
    assert_eq!(by("client-cert")["data"]["fs_id"], FS);
    assert_eq!(by("client-cert")["data"]["sigv4"]["access_key_id"], AKID);
    assert_eq!(by("bind")["data"]["reply"], "READY");
    assert_eq!(by("bind")["data"]["partition"], "5a".repeat(64));
    assert_eq!(
        by("bind")["data"]["scale_up"]["max_multiplexed_connections"],
        5
    );
    out.assert_no_secrets();

    // A failure in JSON: the problem's id, exit status 1, the rest skipped.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = check(
        &with(iam_args(&world, &["--json"]), "--target", &addr),
        &env(&world, true),
    )
    .await;
    assert_eq!(out.code, Some(1));
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["problem"], "unreachable");
    let tcp = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "tcp")
        .unwrap();
    assert_eq!(tcp["status"], "fail");
    assert!(tcp["fix"].as_str().unwrap().contains("port"));
    assert_eq!(report["steps"][4]["status"], "skip");
}
