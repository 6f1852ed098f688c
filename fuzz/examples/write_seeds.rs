//! Writes the seed corpora (`fuzz/seeds/<target>/`) from the project's test vectors and the
//! worked hex examples of the AWSFILE program (`docs/protocol.md` §4). The seeds are committed;
//! run this again when a format changes:
//!
//! ```sh
//! cd fuzz && cargo run --example write_seeds -- seeds
//! ```

use std::path::{Path, PathBuf};

use efs_proxy_fuzz::{
    CertInput, ForwardInput, GroupInput, GroupOp, Op, RecordStreamInput, Side, fragments,
};
use efs_rpc::awsfile::{
    BindClientResponse, BindResponse, PartitionId, ProxyIdentifier, ScaleUpConfig, bind_call,
    bind_reply,
};
use efs_rpc::message::{AuthSys, CallHeader, ReplyHeader, RpcMessage};
use efs_rpc::{AcceptStat, AuthStat, Record, nfs4, xdr};

/// The partition of the worked examples in `docs/protocol.md` §4.3 (`a0 a1 … df`).
fn partition() -> PartitionId {
    let mut p = [0u8; 64];
    for (i, b) in p.iter_mut().enumerate() {
        *b = 0xa0 + i as u8;
    }
    PartitionId(p)
}

fn id() -> ProxyIdentifier {
    ProxyIdentifier::new([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], 1)
}

fn response(bind_response: BindResponse) -> BindClientResponse {
    BindClientResponse {
        bind_response,
        scale_up_config: ScaleUpConfig::default(),
    }
}

fn bind_call_message() -> Vec<u8> {
    bind_call(0x1234_5678, &id()).unwrap()
}

fn ready_reply_message() -> Vec<u8> {
    bind_reply(0x1234_5678, &response(BindResponse::Ready(partition()))).unwrap()
}

fn reply(xid: u32, header: ReplyHeader) -> Vec<u8> {
    RpcMessage::reply(xid, header).encode().unwrap()
}

/// An NFSv4 NULL call with AUTH_SYS credentials, as the kernel client sends first.
fn nfs_null_call() -> Vec<u8> {
    let mut header = CallHeader::new(nfs4::PROGRAM, nfs4::VERSION, nfs4::PROC_NULL);
    header.credential = AuthSys {
        stamp: 0x5eed,
        machine_name: "client.example".into(),
        uid: 0,
        gid: 0,
        gids: vec![0, 1, 2],
    }
    .to_opaque_auth()
    .unwrap();
    RpcMessage::call(7, header).encode().unwrap()
}

/// An NFSv4 COMPOUND call header followed by an opaque body.
fn nfs_compound_call() -> Vec<u8> {
    let mut header = CallHeader::new(nfs4::PROGRAM, nfs4::VERSION, nfs4::PROC_COMPOUND);
    header.credential = AuthSys {
        stamp: 1,
        machine_name: String::new(),
        uid: 1000,
        gid: 1000,
        gids: vec![],
    }
    .to_opaque_auth()
    .unwrap();
    RpcMessage::call(8, header)
        .encode_with_body(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 24])
        .unwrap()
}

fn framed(message: &[u8]) -> Vec<u8> {
    Record::from_message(message).unwrap().into_wire().to_vec()
}

struct Seeds {
    root: PathBuf,
}

impl Seeds {
    fn write(&self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn record_stream(s: &Seeds) {
    let t = "record_stream";
    let call = framed(&bind_call_message());
    let ready = framed(&ready_reply_message());
    s.write(
        t,
        "bind-call-whole",
        &RecordStreamInput::encode(u16::MAX, 255, 0, &call),
    );
    s.write(
        t,
        "bind-call-bytewise",
        &RecordStreamInput::encode(u16::MAX, 1, 0, &call),
    );
    let mut both = ready.clone();
    both.extend(&call);
    s.write(
        t,
        "reply-and-call",
        &RecordStreamInput::encode(4096, 7, 3, &both),
    );
    let mut multi = fragments(&bind_call_message(), 20);
    multi.extend(framed(&reply(
        7,
        ReplyHeader::accepted(AcceptStat::Success),
    )));
    s.write(
        t,
        "multi-fragment",
        &RecordStreamInput::encode(1024, 5, 9, &multi),
    );
    s.write(
        t,
        "zero-size",
        &RecordStreamInput::encode(1024, 255, 0, &[0x80, 0, 0, 0]),
    );
    s.write(
        t,
        "huge-mark",
        &RecordStreamInput::encode(1024, 255, 0, &[0xff; 8]),
    );
    let exact = framed(&[0x5a; 100]);
    s.write(
        t,
        "at-limit",
        &RecordStreamInput::encode(100, 13, 1, &exact),
    );
    let mut over = fragments(&[1; 60], 60);
    over[0] &= 0x7f; // not last
    over.extend(fragments(&[2; 60], 60));
    s.write(
        t,
        "over-limit-in-fragments",
        &RecordStreamInput::encode(100, 255, 0, &over),
    );
    s.write(
        t,
        "truncated",
        &RecordStreamInput::encode(1024, 3, 2, &call[..10]),
    );
}

fn rpc_message(s: &Seeds) {
    let t = "rpc_message";
    s.write(t, "bind-call", &bind_call_message());
    s.write(t, "ready-reply", &ready_reply_message());
    s.write(t, "nfs-null-auth-sys", &nfs_null_call());
    s.write(t, "nfs-compound", &nfs_compound_call());
    s.write(
        t,
        "prog-unavail",
        &reply(3, ReplyHeader::accepted(AcceptStat::ProgUnavail)),
    );
    s.write(
        t,
        "prog-mismatch",
        &reply(
            3,
            ReplyHeader::accepted(AcceptStat::ProgMismatch { low: 1, high: 1 }),
        ),
    );
    s.write(
        t,
        "garbage-args",
        &reply(3, ReplyHeader::accepted(AcceptStat::GarbageArgs)),
    );
    s.write(
        t,
        "rpc-mismatch",
        &reply(4, ReplyHeader::RpcMismatch { low: 2, high: 2 }),
    );
    s.write(
        t,
        "auth-error",
        &reply(5, ReplyHeader::AuthError(AuthStat::TOOWEAK)),
    );
}

fn bind_response(s: &Seeds) {
    let t = "bind_response";
    let bodies = [
        ("ready", BindResponse::Ready(partition())),
        ("preferred", BindResponse::Preferred(partition())),
        ("retry-later-busy", BindResponse::RetryLater("busy".into())),
        ("retry", BindResponse::Retry("again".into())),
        ("error", BindResponse::Error("no such file system".into())),
        ("unknown-99", BindResponse::Unknown(99)),
    ];
    for (name, body) in bodies {
        let r = response(body);
        s.write(t, &format!("body-{name}"), &xdr::to_vec(&r).unwrap());
        s.write(t, &format!("reply-{name}"), &bind_reply(42, &r).unwrap());
    }
    s.write(t, "proxy-identifier", &xdr::to_vec(&id()).unwrap());
    s.write(
        t,
        "prog-unavail",
        &reply(3, ReplyHeader::accepted(AcceptStat::ProgUnavail)),
    );
}

/// The configs efs-utils 3.2.0 writes (proxy/tests/dropin.rs), and the parser's edge cases.
fn dropin_config(s: &Seeds) {
    let t = "dropin_config";
    let s3files = "fips = no\nforeground = yes\nsocket = l:SO_REUSEADDR=yes\nsocket = a:SO_BINDTODEVICE=lo\noutput = /var/log/amazon/efs/fs-0123456789abcdef0.mnt.s3files.20100.efs-proxy.log\npid = /var/run/efs/fs-0123456789abcdef0.mnt.s3files.20100+/stunnel.pid\n[efs]\nclient = yes\naccept = 127.0.0.1:20100\nconnect = use1-az1.fs-0123456789abcdef0.s3files.us-east-1.on.aws:2049\nsslVersion = TLSv1.2\nrenegotiation = no\nTIMEOUTbusy = 20\nTIMEOUTclose = 0\nTIMEOUTidle = 70\ndelay = yes\nverify = 2\nCAfile = /etc/amazon/efs/efs-utils.crt\ncert = /var/run/efs/fs-0123456789abcdef0.mnt.s3files.20100+/certificate.pem\nkey = /etc/amazon/efs/privateKey.pem\ncheckHost = fs-0123456789abcdef0.s3files.us-east-1.on.aws\nretry_nfs_mount_command_timeout_sec = 15\nproxy_logging_level = INFO\nproxy_logging_max_bytes = 1048576\nproxy_logging_file_count = 10\ncloud_watch_metrics = True\ncloud_watch_logs = True\nlog_group_name = /aws/efs/utils\ncloud_watch_logs_retention_days = 14\nfs_id = fs-0123456789abcdef0\nregion = us-east-1\nefs_utils_version = 3.2.0";
    let efs = "fips = no\nforeground = yes\nsocket = l:SO_REUSEADDR=yes\nsocket = a:SO_BINDTODEVICE=lo\npid = /var/run/efs/fs-0123456789abcdef0.mnt.20200+/stunnel.pid\n[efs]\nclient = yes\naccept = 127.0.0.1:20200\nconnect = fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:2049\nsslVersion = TLSv1.2\nrenegotiation = no\nTIMEOUTbusy = 20\nTIMEOUTclose = 0\nTIMEOUTidle = 70\ndelay = yes\nverify = 2\nCAfile = /etc/amazon/efs/efs-utils.crt\ncert = /var/run/efs/fs-0123456789abcdef0.mnt.20200+/certificate.pem\nkey = /etc/amazon/efs/privateKey.pem\ncheckHost = fs-0123456789abcdef0.efs.us-east-1.amazonaws.com\n";
    let aliases = "# written by a test\r\n; another comment\r\nfips = No\r\npid_file_path = /run/p.pid\r\ndebug = DEBUG\r\n[nested_config]\r\nlisten_addr = 127.0.0.1:20200\r\nmount_target_addr = fs-1.efs.eu-west-1.amazonaws.com:2049\r\n[other]\r\nfips = yes\r\n";
    let stdout = "fips = no\npid = /p\nlog_format = stdout\ndebug = nonsense\n[efs]\naccept = [::1]:1\nconnect = h:2049\nproxy_logging_level = loud\nproxy_init_timeout_sec = 0\n";
    let duplicate = "fips = no\npid = /p\n[efs]\naccept = 127.0.0.1:20049\nconnect = h:2049\nlisten_addr = 127.0.0.1:1\n";
    let bad_number = "fips = yes\npid = /p\n[efs]\naccept = 127.0.0.1:20049\nconnect = h:2049\nproxy_logging_max_bytes = -5\ncert =\n";
    for (name, text) in [
        ("s3files", s3files),
        ("efs", efs),
        ("aliases-crlf", aliases),
        ("stdout", stdout),
        ("duplicate", duplicate),
        ("bad-number", bad_number),
    ] {
        s.write(t, name, text.as_bytes());
    }
}

fn pem_load(s: &Seeds, vectors: &Path) {
    let t = "pem_load";
    for entry in std::fs::read_dir(vectors).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pem") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            s.write(t, &name, &std::fs::read(&path).unwrap());
        }
    }
    // A test CA and a client certificate signed by it, as tests/src/pki.rs makes them.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "fuzz test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client =
        rcgen::CertificateParams::new(vec!["fs-0123456789abcdef0.s3files.us-east-1.on.aws".into()])
            .unwrap()
            .signed_by(&client_key, &issuer)
            .unwrap();
    s.write(t, "ca.pem", ca.pem().as_bytes());
    s.write(t, "ecdsa-key.pem", client_key.serialize_pem().as_bytes());
    s.write(
        t,
        "cert-and-key-with-comments.pem",
        format!(
            "# efs-utils comment\n{}# another\n{}",
            client.pem(),
            client_key.serialize_pem()
        )
        .as_bytes(),
    );
    s.write(
        t,
        "chain.pem",
        format!("{}{}", client.pem(), ca.pem()).as_bytes(),
    );
    // PKCS#1 (`BEGIN RSA PRIVATE KEY`), which the key loader converts.
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let pkcs8 = std::fs::read_to_string(vectors.join("test-key-rsa3072.pem")).unwrap();
    let key = rsa::PrivateKey::from_pkcs8_pem(&pkcs8).unwrap();
    let pkcs1 = key.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    s.write(t, "rsa-pkcs1-key.pem", pkcs1.as_bytes());
}

/// Seconds from 1950-01-01 of an `X-Amz-Date`.
fn seconds_since_1950(amz_date: &str) -> u32 {
    let t = efs_proxy::iam::SigningTime::parse_amz_date(amz_date).unwrap();
    (t.offset_date_time().unix_timestamp() + 631_152_000) as u32
}

fn cert_extensions(s: &Seeds, vectors: &Path) {
    let t = "cert_extensions";
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(vectors.join("iam-cert-vectors.json")).unwrap())
            .unwrap();
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    for case in json["cases"].as_array().unwrap() {
        let date = text(&case["sigv4_datetime"]).unwrap();
        let input = CertInput {
            sign: true,
            efs: case["service"] == "elasticfilesystem",
            build: true,
            time: seconds_since_1950(&date),
            backdate: 900,
            lifetime: 10_800,
            access_key_id: text(&case["access_key_id"]).unwrap(),
            secret_access_key: text(&case["secret_access_key"]).unwrap(),
            session_token: text(&case["session_token"]),
            signature: text(&case["signature"]).unwrap_or_default(),
            fs_id: text(&case["fs_id"]).unwrap(),
            region: text(&case["region"]).unwrap(),
            access_point: text(&case["access_point_id"]),
            source: text(&case["client_info"]["source"]).unwrap_or_default(),
            version: text(&case["client_info"]["efs_utils_version"]).unwrap_or_default(),
            common_name: "ip-10-0-0-1.ec2.internal".into(),
            text: date,
            tlv_tag: 0x0c,
            tlv_content: text(&case["fs_id"]).unwrap().into_bytes(),
        };
        let name = text(&case["name"]).unwrap();
        s.write(t, &name, &input.encode());
        let unsigned = CertInput {
            sign: false,
            build: false,
            text: "2026-04-15T12:34:56+02:00".into(),
            tlv_tag: 0x30,
            tlv_content: vec![0x42; 300],
            ..input
        };
        s.write(t, &format!("{name}-unsigned"), &unsigned.encode());
    }
}

fn forward(s: &Seeds) {
    let base = ForwardInput {
        max_record_size: 65_536,
        duplex_capacity: 65_536,
        final_close: Side::Client,
        pending: Vec::new(),
        ops: Vec::new(),
    };
    let seeds = forward_traffic(&base)
        .into_iter()
        .chain(forward_failures(&base));
    for (name, input) in seeds {
        assert_eq!(ForwardInput::parse(&input.encode()), input, "{name}");
        s.write("forward", name, &input.encode());
    }
}

/// `forward` seeds that carry traffic: a bind, records arriving with the bind reply, many
/// fragmented records, a server that stops reading.
fn forward_traffic(base: &ForwardInput) -> Vec<(&'static str, ForwardInput)> {
    let call = framed(&bind_call_message());
    let null_call = framed(&nfs_null_call());
    let ready = framed(&ready_reply_message());
    let null_reply = framed(&reply(7, ReplyHeader::accepted(AcceptStat::Success)));
    vec![
        (
            "call-and-reply",
            ForwardInput {
                ops: vec![
                    Op::Write(Side::Client, call.clone()),
                    Op::Read(Side::Server, 0),
                    Op::Write(Side::Server, ready.clone()),
                    Op::Read(Side::Client, 0),
                ],
                ..base.clone()
            },
        ),
        (
            "pending-after-bind",
            ForwardInput {
                pending: [ready.clone(), null_reply.clone()].concat(),
                final_close: Side::Server,
                ops: vec![
                    Op::Write(Side::Client, null_call.clone()),
                    Op::Read(Side::Client, 0),
                    Op::Read(Side::Server, 0),
                ],
                ..base.clone()
            },
        ),
        (
            "many-fragmented-records",
            ForwardInput {
                max_record_size: 4096,
                duplex_capacity: 1024,
                ops: vec![
                    Op::WriteRecords {
                        side: Side::Client,
                        count: 50,
                        len: 1000,
                        fragments: 2,
                    },
                    Op::Read(Side::Server, 100),
                    Op::WriteRecords {
                        side: Side::Server,
                        count: 20,
                        len: 4000,
                        fragments: 0,
                    },
                    Op::Sleep(100),
                ],
                ..base.clone()
            },
        ),
        (
            "stalled-server",
            ForwardInput {
                max_record_size: 65_536,
                duplex_capacity: 4096,
                ops: vec![Op::WriteRecords {
                    side: Side::Client,
                    count: 2000,
                    len: 60_000,
                    fragments: 3,
                }],
                ..base.clone()
            },
        ),
    ]
}

/// `forward` seeds where something goes wrong: invalid or oversized records, a side that
/// vanishes or half-closes mid-record, pipes of three bytes.
fn forward_failures(base: &ForwardInput) -> Vec<(&'static str, ForwardInput)> {
    let call = framed(&bind_call_message());
    let null_call = framed(&nfs_null_call());
    vec![
        (
            "invalid-client-stream",
            ForwardInput {
                ops: vec![
                    Op::Write(Side::Client, call.clone()),
                    Op::Write(Side::Client, vec![0x80, 0, 0, 0]),
                    Op::Read(Side::Server, 0),
                ],
                ..base.clone()
            },
        ),
        (
            "oversized-server-record",
            ForwardInput {
                max_record_size: 100,
                ops: vec![
                    Op::Write(Side::Server, framed(&[7; 101])),
                    Op::Read(Side::Client, 0),
                ],
                ..base.clone()
            },
        ),
        (
            "server-vanishes",
            ForwardInput {
                ops: vec![
                    Op::Write(Side::Client, call.clone()),
                    Op::Drop(Side::Server),
                    Op::Write(Side::Client, null_call.clone()),
                    Op::Read(Side::Client, 0),
                ],
                ..base.clone()
            },
        ),
        (
            "client-half-close-mid-record",
            ForwardInput {
                ops: vec![
                    Op::Write(Side::Client, call[..30].to_vec()),
                    Op::ShutdownWrite(Side::Client),
                    Op::Read(Side::Server, 0),
                ],
                ..base.clone()
            },
        ),
        (
            "tiny-pipes-bytewise",
            ForwardInput {
                duplex_capacity: 3,
                final_close: Side::Server,
                ops: call
                    .iter()
                    .map(|b| Op::Write(Side::Client, vec![*b]))
                    .chain([Op::Read(Side::Server, 1), Op::Read(Side::Server, 0)])
                    .collect(),
                ..base.clone()
            },
        ),
    ]
}

/// `count` small calls from the endpoint (replies when a server sends them).
fn calls(count: u16) -> GroupOp {
    GroupOp::WriteRecords {
        count,
        len: 200,
        fragments: 1,
        flip: false,
    }
}

/// Operations at endpoints (0: the client, k: the server of leg k-1).
type Ops = Vec<(usize, GroupOp)>;

/// Busy client and server traffic for over 3 s (the rate window: the session asks for more
/// connections), then: the handed-over legs carry replies; callbacks both ways; a leg that
/// vanishes and one that half-closes.
fn group_scenarios() -> (Ops, Ops, Ops) {
    // Traffic for over 3 s (the rate window) makes the session ask for more connections.
    let busy = |ops: &mut Vec<(usize, GroupOp)>| {
        for _ in 0..5 {
            ops.push((0, calls(50)));
            ops.push((1, GroupOp::Read(0)));
            ops.push((1, calls(50)));
            ops.push((0, GroupOp::Read(0)));
            ops.push((0, GroupOp::Sleep(1000)));
        }
    };
    let mut scale_up = Vec::new();
    busy(&mut scale_up);
    scale_up.extend([
        (0, calls(300)),
        (0, GroupOp::Quiesce),
        (2, calls(100)),
        (3, calls(100)),
        (0, GroupOp::Quiesce),
    ]);
    let mut callbacks = Vec::new();
    busy(&mut callbacks);
    callbacks.extend([
        (
            2,
            GroupOp::WriteRecords {
                count: 20,
                len: 64,
                fragments: 2,
                flip: true,
            },
        ),
        (0, GroupOp::Read(0)),
        (
            0,
            GroupOp::WriteRecords {
                count: 20,
                len: 64,
                fragments: 1,
                flip: true,
            },
        ),
        (0, GroupOp::Quiesce),
    ]);
    let mut leg_fails = Vec::new();
    busy(&mut leg_fails);
    leg_fails.extend([
        (0, GroupOp::Quiesce),
        (2, GroupOp::Drop),
        (0, calls(100)),
        (0, GroupOp::Quiesce),
        (3, GroupOp::ShutdownWrite),
        (0, calls(10)),
    ]);
    (scale_up, callbacks, leg_fails)
}

fn forward_group(s: &Seeds) {
    let base = GroupInput {
        max_record_size: 65_536,
        duplex_capacity: 65_536,
        legs: 3,
        backoff_first: false,
        server_timeout_ms: None,
        pending: Vec::new(),
        ops: Vec::new(),
    };
    let (scale_up, callbacks, leg_fails) = group_scenarios();
    let seeds = [
        (
            "scale-up",
            GroupInput {
                ops: scale_up,
                ..base.clone()
            },
        ),
        (
            "callbacks",
            GroupInput {
                legs: 2,
                backoff_first: true,
                ops: callbacks,
                ..base.clone()
            },
        ),
        (
            "leg-fails",
            GroupInput {
                ops: leg_fails,
                ..base.clone()
            },
        ),
        (
            "server-timeout",
            GroupInput {
                legs: 1,
                server_timeout_ms: Some(1000),
                ops: vec![(0, calls(3)), (0, GroupOp::Sleep(3000))],
                ..base.clone()
            },
        ),
        (
            "pending-and-garbage",
            GroupInput {
                legs: 2,
                max_record_size: 300,
                duplex_capacity: 7,
                pending: framed(&ready_reply_message()),
                ops: vec![
                    (
                        1,
                        GroupOp::Write(framed(&reply(
                            1,
                            ReplyHeader::accepted(AcceptStat::Success),
                        ))),
                    ),
                    (0, GroupOp::Write(framed(&bind_call_message()))),
                    (0, GroupOp::Quiesce),
                    (1, GroupOp::Write(vec![0x80, 0, 0, 0])),
                    (0, GroupOp::Read(0)),
                ],
                ..base.clone()
            },
        ),
    ];
    for (name, input) in seeds {
        assert_eq!(GroupInput::parse(&input.encode()), input, "{name}");
        s.write("forward_group", name, &input.encode());
    }
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("seeds"));
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proxy/tests/vectors/iam");
    let s = Seeds { root };
    record_stream(&s);
    rpc_message(&s);
    bind_response(&s);
    dropin_config(&s);
    pem_load(&s, &vectors);
    cert_extensions(&s, &vectors);
    forward(&s);
    forward_group(&s);
    println!("seeds written to {}", s.root.display());
}
