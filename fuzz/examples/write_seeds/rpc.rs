//! Seeds of the byte-level RPC targets: `record_stream` (record marking), `rpc_message`
//! (call and reply headers) and `bind_response` (AWSFILE bind replies).

use efs_proxy_fuzz::{RecordStreamInput, fragments};
use efs_rpc::awsfile::{BindResponse, bind_reply};
use efs_rpc::message::ReplyHeader;
use efs_rpc::{AcceptStat, AuthStat, xdr};

use crate::Seeds;
use crate::messages::{
    bind_call_message, framed, id, nfs_compound_call, nfs_null_call, partition,
    ready_reply_message, reply, response,
};

pub(crate) fn record_stream(s: &Seeds) {
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

pub(crate) fn rpc_message(s: &Seeds) {
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

pub(crate) fn bind_response(s: &Seeds) {
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
