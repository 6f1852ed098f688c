//! Shared pieces of the fuzz targets: a reference record-marking decoder (the oracle the real
//! codec and the forwarder are compared with), the byte formats of the `record_stream` and
//! `forward` inputs (hand-written so that seeds can be made from real RPC records), and an
//! allocation counter for the forwarding target.

mod cert_input;
mod counting_alloc;
mod forward_input;
mod input;
pub mod peer;
mod reference;

pub use cert_input::*;
pub use counting_alloc::*;
pub use efs_rpc::record::{FRAGMENT_SIZE_MASK, LAST_FRAGMENT};
pub use forward_input::*;
pub use input::*;
pub use reference::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_decoder_basics() {
        let mut wire = fragments(b"abcdefg", 3);
        wire.extend(fragments(b"xy", 10));
        let d = reference_records(&wire, 100, true);
        assert_eq!(d.messages, vec![b"abcdefg".to_vec(), b"xy".to_vec()]);
        assert_eq!(d.end, Ok(()));
        let d = reference_records(&wire[..wire.len() - 1], 100, true);
        assert_eq!(d.end, Err(RefError::Truncated { buffered: 5 }));
        assert_eq!(
            reference_records(&wire, 5, false).end,
            Err(RefError::RecordTooLarge { size: 6, max: 5 })
        );
    }

    #[test]
    fn reframe_agrees_with_the_reference_decoder() {
        let mut wire = fragments(b"abcdefg", 3);
        wire.extend(fragments(b"xy", 10));
        wire.extend(fragments(b"partial", 2));
        for cut in 0..=wire.len() {
            for max in [1, 5, 7, 100] {
                for eof in [false, true] {
                    let d = reference_records(&wire[..cut], max, eof);
                    let r = reframe(&wire[..cut], max, eof);
                    assert_eq!(
                        (r.wire, r.records, r.end),
                        (d.wire(), d.messages.len(), d.end)
                    );
                }
            }
        }
    }

    #[test]
    fn group_input_round_trips() {
        let input = GroupInput {
            max_record_size: 300,
            duplex_capacity: 17,
            legs: 3,
            backoff_first: true,
            server_timeout_ms: Some(1000),
            pending: vec![4, 5],
            ops: vec![
                (0, GroupOp::Write(vec![1, 2, 3])),
                (
                    2,
                    GroupOp::WriteRecords {
                        count: 9,
                        len: 40,
                        fragments: 3,
                        flip: true,
                    },
                ),
                (3, GroupOp::Read(5)),
                (1, GroupOp::ShutdownWrite),
                (0, GroupOp::Drop),
                (0, GroupOp::Sleep(7)),
                (2, GroupOp::Quiesce),
            ],
        };
        assert_eq!(GroupInput::parse(&input.encode()), input);
        assert!(is_subsequence(&[1, 3], &[1, 2, 3]) && !is_subsequence(&[3, 1], &[1, 2, 3]));
    }

    #[test]
    fn cert_input_round_trips() {
        let input = CertInput {
            sign: true,
            build: true,
            time: 0x1234_5678,
            backdate: 900,
            lifetime: 10800,
            access_key_id: "AKIDEXAMPLE".into(),
            session_token: Some("token".into()),
            fs_id: "fs-0123456789abcdef0".into(),
            access_point: Some(String::new()),
            text: "20260415T123456Z".into(),
            tlv_tag: 0x30,
            tlv_content: vec![0xff, 0, 0xff],
            ..CertInput::default()
        };
        assert_eq!(CertInput::parse(&input.encode()), input);
    }

    #[test]
    fn forward_input_round_trips() {
        let input = ForwardInput {
            max_record_size: 1000,
            duplex_capacity: 64,
            final_close: Side::Server,
            pending: vec![1, 2, 3],
            ops: vec![
                Op::Write(Side::Client, vec![9; 10]),
                Op::WriteRecords {
                    side: Side::Server,
                    count: 3,
                    len: 100,
                    fragments: 2,
                },
                Op::Read(Side::Client, 7),
                Op::ShutdownWrite(Side::Server),
                Op::Drop(Side::Client),
                Op::Sleep(5),
                Op::Quiesce,
            ],
        };
        assert_eq!(ForwardInput::parse(&input.encode()), input);
    }
}
