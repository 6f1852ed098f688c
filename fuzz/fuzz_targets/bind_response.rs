//! The AWSFILE bind reply, the one message the proxy decodes from a server before forwarding:
//! `BindClientResponse` bodies and whole replies never panic, and what decodes re-encodes and
//! decodes back to the same value. Also the call's `ProxyIdentifier`.
#![no_main]

use efs_rpc::awsfile::{
    BindClientResponse, BindResponse, ProxyIdentifier, ScaleUpConfig, bind_reply, parse_bind_reply,
};
use efs_rpc::xdr::{self, Unpack};
use libfuzzer_sys::fuzz_target;

fn has_replacement(response: &BindClientResponse) -> bool {
    match &response.bind_response {
        BindResponse::Retry(s) | BindResponse::RetryLater(s) | BindResponse::Error(s) => {
            s.contains('\u{fffd}')
        }
        _ => false,
    }
}

fn check_response(response: &BindClientResponse, wire_len: usize) {
    let encoded = xdr::to_vec(response).expect("a decoded response re-encodes");
    // Invalid UTF-8 in a diagnostic string is replaced, which may change its length.
    assert!(encoded.len() == wire_len || has_replacement(response));
    assert_eq!(
        &xdr::from_slice_exact::<BindClientResponse>(&encoded).unwrap(),
        response
    );
    if let Some(p) = response.bind_response.ready_partition() {
        let _ = format!("{p} {p:?}");
    }
    let _ = format!("{response:?}");
}

fuzz_target!(|data: &[u8]| {
    match xdr::from_slice_exact::<BindClientResponse>(data) {
        Ok(response) => check_response(&response, data.len()),
        Err(e) => {
            let _ = e.to_string();
        }
    }

    match parse_bind_reply(data) {
        Ok(reply) => {
            let (_, results) = efs_rpc::parse_accepted_reply(data).unwrap();
            // Bytes after the response are ignored, and counted.
            assert!(reply.trailing <= results.len());
            check_response(&reply.response, results.len() - reply.trailing);
            let message = bind_reply(reply.xid, &reply.response).unwrap();
            let again = parse_bind_reply(&message).unwrap();
            assert_eq!(
                (again.xid, &again.response, again.trailing),
                (reply.xid, &reply.response, 0)
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    // The parts on their own, as a prefix of the input.
    let mut input = data;
    if let Ok((bind, n)) = BindResponse::unpack(&mut input) {
        assert_eq!(n, data.len() - input.len());
        let _ = bind.ready_partition();
    }
    let mut input = data;
    if let Ok((config, n)) = ScaleUpConfig::unpack(&mut input) {
        assert_eq!((n, data.len() - input.len()), (16, 16));
        assert_eq!(xdr::to_vec(&config).unwrap(), data[..16]);
    }

    if let Ok(id) = xdr::from_slice_exact::<ProxyIdentifier>(data) {
        let encoded = xdr::to_vec(&id).expect("a decoded identifier re-encodes");
        assert_eq!(encoded.len(), data.len());
        assert_eq!(
            xdr::from_slice_exact::<ProxyIdentifier>(&encoded).unwrap(),
            id
        );
        assert_eq!(id.incarnation_number().is_some(), id.incarnation.len() == 8);
    }
});
