//! The RPC and AWSFILE messages the seeds are built from: the worked examples of
//! `docs/protocol.md` §4 (bind call, bind replies) and NFSv4 calls, plus record framing.

use efs_rpc::awsfile::{
    BindClientResponse, BindResponse, PartitionId, ProxyIdentifier, ScaleUpConfig, bind_call,
    bind_reply,
};
use efs_rpc::message::{AuthSys, CallHeader, ReplyHeader, RpcMessage};
use efs_rpc::{Record, nfs4};

/// The partition of the worked examples in `docs/protocol.md` §4.3 (`a0 a1 … df`).
pub(crate) fn partition() -> PartitionId {
    let mut p = [0u8; 64];
    for (i, b) in p.iter_mut().enumerate() {
        *b = 0xa0 + i as u8;
    }
    PartitionId(p)
}

pub(crate) fn id() -> ProxyIdentifier {
    ProxyIdentifier::new([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], 1)
}

pub(crate) fn response(bind_response: BindResponse) -> BindClientResponse {
    BindClientResponse {
        bind_response,
        scale_up_config: ScaleUpConfig::default(),
    }
}

pub(crate) fn bind_call_message() -> Vec<u8> {
    bind_call(0x1234_5678, &id()).unwrap()
}

pub(crate) fn ready_reply_message() -> Vec<u8> {
    bind_reply(0x1234_5678, &response(BindResponse::Ready(partition()))).unwrap()
}

pub(crate) fn reply(xid: u32, header: ReplyHeader) -> Vec<u8> {
    RpcMessage::reply(xid, header).encode().unwrap()
}

/// An NFSv4 NULL call with AUTH_SYS credentials, as the kernel client sends first.
pub(crate) fn nfs_null_call() -> Vec<u8> {
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
pub(crate) fn nfs_compound_call() -> Vec<u8> {
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

pub(crate) fn framed(message: &[u8]) -> Vec<u8> {
    Record::from_message(message).unwrap().into_wire().to_vec()
}
