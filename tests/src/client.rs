//! What an NFS client sends through the proxy in the tests: one call as one record, and the
//! reply read back. (The pipelined load client for resilience tests and benchmarks is
//! [`crate::load`].)

use std::time::Duration;

use efs_rpc::{CallHeader, Record, RpcMessage, parse_accepted_reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The NFS program number, so calls look like NFS to every layer.
pub const NFS_PROGRAM: u32 = 100_003;

/// Sends an NFSv4 call of `procedure` (0: NULL) with `args` as one single-fragment record.
pub async fn send_call(
    stream: &mut TcpStream,
    xid: u32,
    procedure: u32,
    args: &[u8],
) -> std::io::Result<()> {
    let message = RpcMessage::call(xid, CallHeader::new(NFS_PROGRAM, 4, procedure))
        .encode_with_body(args)
        .expect("a call encodes");
    let record = Record::from_message(&message).expect("a call fits a record");
    stream.write_all(record.wire()).await
}

/// Reads one single-fragment record; `None` on end of stream or reset.
pub async fn read_record(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut mark = [0u8; 4];
    stream.read_exact(&mut mark).await.ok()?;
    let mut message = vec![0; (u32::from_be_bytes(mark) & 0x7fff_ffff) as usize];
    stream.read_exact(&mut message).await.ok()?;
    Some(message)
}

/// Calls `procedure` with `args` and returns the results of the accepted reply, which must
/// answer `xid` (for the echo responder the results are `args`).
pub async fn call(stream: &mut TcpStream, xid: u32, procedure: u32, args: &[u8]) -> Vec<u8> {
    send_call(stream, xid, procedure, args)
        .await
        .expect("the call is sent");
    let reply = read_record(stream).await.expect("a reply record");
    let (got, results) = parse_accepted_reply(&reply).expect("an accepted reply");
    assert_eq!(got, xid, "the reply answers the call");
    results.to_vec()
}

/// A NULL call answered within 10 s (`Some`), or not: sending failed, the connection was
/// closed, or no (accepted, matching) reply came.
pub async fn null_call(stream: &mut TcpStream, xid: u32) -> Option<()> {
    send_call(stream, xid, 0, &[]).await.ok()?;
    let reply = tokio::time::timeout(Duration::from_secs(10), read_record(stream))
        .await
        .ok()??;
    let (got, _) = parse_accepted_reply(&reply).ok()?;
    (got == xid).then_some(())
}
