//! Seeds of `forward`: scripts of one client-server connection through the forwarder, both
//! ordinary traffic and failures.

use efs_proxy_fuzz::{ForwardInput, Op, Side};
use efs_rpc::AcceptStat;
use efs_rpc::message::ReplyHeader;

use crate::Seeds;
use crate::messages::{bind_call_message, framed, nfs_null_call, ready_reply_message, reply};

pub(crate) fn forward(s: &Seeds) {
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
