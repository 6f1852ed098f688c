//! Property tests: every encoder of this crate round-trips through its decoder, for arbitrary
//! values, and the record decoder gives the same records however the stream is fragmented
//! and chunked. (The fuzz targets under `fuzz/` feed the decoders arbitrary bytes; these
//! tests start from arbitrary *values*.)

use bytes::BytesMut;
use efs_rpc::awsfile::{
    BindClientResponse, BindResponse, PartitionId, ProxyIdentifier, ScaleUpConfig, bind_call,
    bind_reply, parse_bind_call, parse_bind_reply,
};
use efs_rpc::message::{MAX_AUTH_BYTES, MAX_AUTH_SYS_GIDS};
use efs_rpc::test_util::fragmented;
use efs_rpc::{
    AcceptStat, AuthFlavor, AuthStat, AuthSys, CallHeader, MessageBody, OpaqueAuth, Record,
    RecordCodec, RecordError, ReplyHeader, RpcMessage, xdr,
};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

fn opaque_auth() -> impl Strategy<Value = OpaqueAuth> {
    (
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..=MAX_AUTH_BYTES),
    )
        .prop_map(|(flavor, body)| OpaqueAuth {
            flavor: AuthFlavor(flavor),
            body,
        })
}

fn auth_sys() -> impl Strategy<Value = AuthSys> {
    (
        any::<u32>(),
        "\\PC{0,60}",
        any::<u32>(),
        any::<u32>(),
        prop::collection::vec(any::<u32>(), 0..=MAX_AUTH_SYS_GIDS),
    )
        .prop_map(|(stamp, machine_name, uid, gid, gids)| AuthSys {
            stamp,
            machine_name,
            uid,
            gid,
            gids,
        })
}

fn accept_stat() -> impl Strategy<Value = AcceptStat> {
    prop_oneof![
        Just(AcceptStat::Success),
        Just(AcceptStat::ProgUnavail),
        (any::<u32>(), any::<u32>()).prop_map(|(low, high)| AcceptStat::ProgMismatch { low, high }),
        Just(AcceptStat::ProcUnavail),
        Just(AcceptStat::GarbageArgs),
        Just(AcceptStat::SystemErr),
    ]
}

fn rpc_message() -> impl Strategy<Value = RpcMessage> {
    let call = (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        opaque_auth(),
        opaque_auth(),
    )
        .prop_map(
            |(rpc_version, program, version, procedure, credential, verifier)| {
                MessageBody::Call(CallHeader {
                    rpc_version,
                    program,
                    version,
                    procedure,
                    credential,
                    verifier,
                })
            },
        );
    let reply = prop_oneof![
        (opaque_auth(), accept_stat())
            .prop_map(|(verifier, stat)| ReplyHeader::Accepted { verifier, stat }),
        (any::<u32>(), any::<u32>()).prop_map(|(low, high)| ReplyHeader::RpcMismatch { low, high }),
        any::<u32>().prop_map(|s| ReplyHeader::AuthError(AuthStat(s))),
    ]
    .prop_map(MessageBody::Reply);
    (any::<u32>(), prop_oneof![call, reply]).prop_map(|(xid, body)| RpcMessage { xid, body })
}

fn partition() -> impl Strategy<Value = PartitionId> {
    prop::collection::vec(any::<u8>(), 64).prop_map(|v| PartitionId(v.try_into().unwrap()))
}

fn bind_response() -> impl Strategy<Value = BindResponse> {
    prop_oneof![
        "\\PC{0,100}".prop_map(BindResponse::Retry),
        "\\PC{0,100}".prop_map(BindResponse::RetryLater),
        partition().prop_map(BindResponse::Preferred),
        partition().prop_map(BindResponse::Ready),
        "\\PC{0,100}".prop_map(BindResponse::Error),
        any::<i32>()
            .prop_filter("not a defined arm", |d| !(0..=4).contains(d))
            .prop_map(BindResponse::Unknown),
    ]
}

fn bind_client_response() -> impl Strategy<Value = BindClientResponse> {
    (
        bind_response(),
        any::<(i32, i32, i32, i32)>().prop_map(|(a, b, c, d)| ScaleUpConfig {
            max_multiplexed_connections: a,
            scale_up_bytes_per_sec_threshold: b,
            scale_up_threshold_breached_duration_sec: c,
            scale_up_lookback_window_size_sec: d,
        }),
    )
        .prop_map(|(bind_response, scale_up_config)| BindClientResponse {
            bind_response,
            scale_up_config,
        })
}

fn proxy_identifier() -> impl Strategy<Value = ProxyIdentifier> {
    (
        prop::collection::vec(any::<u8>(), 0..=16),
        prop::collection::vec(any::<u8>(), 0..=8),
    )
        .prop_map(|(identifier, incarnation)| ProxyIdentifier {
            identifier,
            incarnation,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn records_decode_the_same_in_any_fragmentation_and_chunking(
        messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..600), 1..12),
        fragment_sizes in prop::collection::vec(1usize..300, 1..6),
        chunk_sizes in prop::collection::vec(1usize..200, 1..6),
    ) {
        let mut wire = Vec::new();
        for m in &messages {
            wire.extend(fragmented(m, &fragment_sizes));
        }
        let mut codec = RecordCodec::new(600);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut rest = &wire[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = chunk_sizes[i % chunk_sizes.len()].min(rest.len());
            i += 1;
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(record) = codec.decode(&mut buf).unwrap() {
                got.push(record);
            }
        }
        prop_assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
        prop_assert_eq!(got.len(), messages.len());
        let mut encoder = RecordCodec::new(600);
        for (record, message) in got.iter().zip(&messages) {
            prop_assert_eq!(record.message(), &message[..]);
            let mut framed = BytesMut::new();
            encoder.encode(&message[..], &mut framed).unwrap();
            prop_assert_eq!(&framed[..], &record.wire()[..]);
            prop_assert_eq!(&Record::from_message(message).unwrap(), record);
        }
    }

    #[test]
    fn any_strict_prefix_of_a_record_stream_is_truncated_at_eof(
        message in prop::collection::vec(any::<u8>(), 1..300),
        fragment_sizes in prop::collection::vec(1usize..100, 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let wire = fragmented(&message, &fragment_sizes);
        let cut = 1 + cut.index(wire.len() - 1);
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut codec = RecordCodec::default();
        let err = loop {
            match codec.decode_eof(&mut buf) {
                Ok(Some(_)) => prop_assert!(false, "a record from a strict prefix"),
                Ok(None) => prop_assert!(false, "a strict prefix ended cleanly"),
                Err(e) => break e,
            }
        };
        prop_assert!(matches!(err, RecordError::Truncated { .. }), "{}", err);
    }

    #[test]
    fn rpc_headers_round_trip(
        message in rpc_message(),
        body in prop::collection::vec(any::<u8>(), 0..64),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 4),
    ) {
        let encoded = message.encode_with_body(&body).unwrap();
        let (decoded, rest) = RpcMessage::decode(&encoded).unwrap();
        prop_assert_eq!(&decoded, &message);
        prop_assert_eq!(rest, &body[..]);
        // A strict prefix of the header is an error, never a panic or a different value.
        // (Sampled: each XDR error costs a backtrace when RUST_BACKTRACE is set.)
        let header_len = encoded.len() - body.len();
        for cut in &cuts {
            prop_assert!(RpcMessage::decode(&encoded[..cut.index(header_len)]).is_err());
        }
    }

    #[test]
    fn auth_sys_round_trips(sys in auth_sys()) {
        let auth = sys.to_opaque_auth().unwrap();
        prop_assert!(auth.body.len() <= MAX_AUTH_BYTES);
        prop_assert_eq!(auth.auth_sys(), Some(Ok(sys.clone())));
        let bytes = xdr::to_vec(&sys).unwrap();
        prop_assert_eq!(xdr::from_slice_exact::<AuthSys>(&bytes).unwrap(), sys);
    }

    #[test]
    fn bind_responses_round_trip(
        response in bind_client_response(),
        xid in any::<u32>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 4),
    ) {
        let body = xdr::to_vec(&response).unwrap();
        prop_assert_eq!(body.len() % 4, 0);
        prop_assert_eq!(xdr::from_slice_exact::<BindClientResponse>(&body).unwrap(), response.clone());
        let message = bind_reply(xid, &response).unwrap();
        let reply = parse_bind_reply(&message).unwrap();
        prop_assert_eq!((reply.xid, reply.response, reply.trailing), (xid, response, 0));
        for cut in &cuts {
            let len = cut.index(message.len());
            prop_assert!(parse_bind_reply(&message[..len]).is_err(), "prefix {}", len);
        }
    }

    #[test]
    fn bind_calls_round_trip(id in proxy_identifier(), xid in any::<u32>()) {
        let message = bind_call(xid, &id).unwrap();
        prop_assert_eq!(parse_bind_call(&message).unwrap(), (xid, id.clone()));
        prop_assert_eq!(id.incarnation_number().is_some(), id.incarnation.len() == 8);
        let record = Record::from_message(&message).unwrap();
        prop_assert_eq!(record.xid(), Some(xid));
    }

    #[test]
    fn proxy_identifiers_from_numbers_round_trip(process in any::<[u8; 16]>(), incarnation in any::<i64>()) {
        let id = ProxyIdentifier::new(process, incarnation);
        prop_assert_eq!(id.incarnation_number(), Some(incarnation));
        let bytes = xdr::to_vec(&id).unwrap();
        prop_assert_eq!(xdr::from_slice_exact::<ProxyIdentifier>(&bytes).unwrap(), id);
    }

    #[test]
    fn oversized_values_are_refused_by_the_encoder(
        body in prop::collection::vec(any::<u8>(), MAX_AUTH_BYTES + 1..MAX_AUTH_BYTES + 40),
        gids in prop::collection::vec(any::<u32>(), MAX_AUTH_SYS_GIDS + 1..40),
    ) {
        let auth = OpaqueAuth { flavor: AuthFlavor::NONE, body };
        let mut header = CallHeader::new(1, 1, 1);
        header.credential = auth;
        prop_assert!(RpcMessage::call(1, header).encode().is_err());
        let sys = AuthSys { stamp: 0, machine_name: String::new(), uid: 0, gid: 0, gids };
        prop_assert!(sys.to_opaque_auth().is_err());
    }
}
