//! ONC RPC v2 call and reply headers (what the proxy and the test peers decode from a server
//! or a client): never panic; whatever decodes re-encodes to the same length and decodes to
//! the same value; the reply and bind-call helpers agree with the header decoder, and so do
//! the NFSv4 COMPOUND peek (`nfs4::compound_head`), the forwarder's header peek
//! (`peek_header`: xid and message type) and `check`'s reply sniffing (`looks_like_reply`).
#![no_main]

use efs_rpc::awsfile::{BindCallError, bind_call, parse_bind_call};
use efs_rpc::message::{MessageBody, OpaqueAuth, ReplyHeader};
use efs_rpc::xdr::{self, Unpack};
use efs_rpc::{AcceptStat, AuthSys, MessageType, ReplyError, RpcMessage, parse_accepted_reply};
use libfuzzer_sys::fuzz_target;

fn check_auth(auth: &OpaqueAuth) {
    let Some(sys) = auth.auth_sys() else { return };
    let Ok(sys) = sys else { return };
    let again = sys.to_opaque_auth().expect("a decoded AUTH_SYS re-encodes");
    assert_eq!(again.body.len(), auth.body.len());
    assert_eq!(again.auth_sys(), Some(Ok(sys)));
}

fuzz_target!(|data: &[u8]| {
    match RpcMessage::decode(data) {
        Ok((header, rest)) => {
            let consumed = data.len() - rest.len();
            let encoded = header.encode().expect("a decoded header re-encodes");
            assert_eq!(encoded.len(), consumed, "{header:?}");
            let (again, tail) = RpcMessage::decode(&encoded).unwrap();
            assert_eq!(again, header);
            assert!(tail.is_empty());
            let with_body = header.encode_with_body(rest).unwrap();
            assert_eq!(with_body.len(), data.len());

            match &header.body {
                MessageBody::Call(call) => {
                    check_auth(&call.credential);
                    check_auth(&call.verifier);
                    assert_eq!(parse_accepted_reply(data), Err(ReplyError::NotAReply));
                }
                MessageBody::Reply(reply) => {
                    if let ReplyHeader::Accepted { verifier, .. } = reply {
                        check_auth(verifier);
                    }
                    let parsed = parse_accepted_reply(data);
                    match reply {
                        ReplyHeader::Accepted {
                            stat: AcceptStat::Success,
                            ..
                        } => assert_eq!(parsed, Ok((header.xid, rest))),
                        _ => assert!(parsed.is_err()),
                    }
                    assert_eq!(parse_bind_call(data), Err(BindCallError::NotACall));
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
            let err = parse_accepted_reply(data).unwrap_err();
            let _ = err.to_string();
        }
    }

    if let Ok((xid, id)) = parse_bind_call(data) {
        let call = bind_call(xid, &id).expect("a decoded identifier re-encodes");
        assert_eq!(parse_bind_call(&call), Ok((xid, id)));
    }

    // The COMPOUND head the forwarder peeks at: only ever found in an NFSv4 COMPOUND call
    // the full header decoder agrees on, and read from the first words after the header.
    if let Some(head) = efs_rpc::nfs4::compound_head(data) {
        let _ = head.needs_bound_connection();
        if let Ok((header, args)) = RpcMessage::decode(data) {
            let MessageBody::Call(call) = &header.body else {
                panic!("a COMPOUND head in a reply: {header:?}")
            };
            assert_eq!(
                (call.program, call.version, call.procedure),
                (
                    efs_rpc::nfs4::PROGRAM,
                    efs_rpc::nfs4::VERSION,
                    efs_rpc::nfs4::PROC_COMPOUND
                )
            );
            assert!(
                args.len() >= 12,
                "tag length, minor version and count were read"
            );
            if let Some(op) = head.first_op {
                let tag = u32::from_be_bytes(args[..4].try_into().unwrap()) as usize;
                let at = 4 + tag.div_ceil(4) * 4 + 8;
                assert_eq!(args.get(at..at + 4), Some(&op.to_be_bytes()[..]));
            }
        }
    }

    // The header peek and the reply sniffing: never more than the decoder says. A message the
    // decoder accepts has the xid and type the peek reads, and a decoded reply looks like one.
    let peek = efs_rpc::peek_header(data);
    let sniffed = efs_rpc::looks_like_reply(data);
    assert!(!sniffed || peek.is_some_and(|p| p.kind == MessageType::Reply));
    if let Ok((header, _)) = RpcMessage::decode(data) {
        let peek = peek.expect("a decoded message has a header to peek at");
        assert_eq!(peek.xid, header.xid);
        let is_reply = matches!(header.body, MessageBody::Reply(_));
        assert_eq!(peek.kind == MessageType::Reply, is_reply);
        assert_eq!(sniffed, is_reply);
    }

    // The authentication bodies on their own.
    if let Ok(sys) = xdr::from_slice_exact::<AuthSys>(data) {
        assert_eq!(xdr::to_vec(&sys).unwrap().len(), data.len());
    }
    let mut input = data;
    if let Ok((auth, n)) = OpaqueAuth::unpack(&mut input) {
        assert_eq!(n, data.len() - input.len());
        assert_eq!(xdr::to_vec(&auth).unwrap().len(), n);
    }
});
