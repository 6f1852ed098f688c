//! Seeds of `forward_group`: scripts of a session over several connections (scale-up,
//! callbacks, a failing leg, a server timeout, garbage after the bind reply).

use efs_proxy_fuzz::{GroupInput, GroupOp};
use efs_rpc::AcceptStat;
use efs_rpc::message::ReplyHeader;

use crate::Seeds;
use crate::messages::{bind_call_message, framed, ready_reply_message, reply};

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

pub(crate) fn forward_group(s: &Seeds) {
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
