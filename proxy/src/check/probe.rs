//! Watching the peer: the first bytes it sent during the TLS handshake ([`recording`]), and a
//! plaintext NFS NULL call for a peer that stayed silent or hung up ([`plaintext_probe`]).
//! Together they tell a plain NFS server, a TLS endpoint and anything else apart.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use efs_rpc::record::RECORD_MARK_LEN;
use efs_rpc::{MessageBody, Record, RecordMark, RpcMessage, looks_like_reply, nfs4};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::io::InspectReader;

/// Bytes of the peer's first answer kept for the diagnosis.
const FIRST_BYTES: usize = 256;

/// The stream the TLS step reads through: it keeps the first bytes the peer sent, for the
/// diagnosis of a failed handshake.
pub(super) type Recording<S> = InspectReader<S, Keep>;

/// What [`Recording`] does with each read.
pub(super) type Keep = Box<dyn FnMut(&[u8]) + Send>;

/// Wraps `inner`; the second value fills with the first [`FIRST_BYTES`] bytes read.
pub(super) fn recording<S: AsyncRead>(inner: S) -> (Recording<S>, Arc<Mutex<Vec<u8>>>) {
    let first = Arc::new(Mutex::new(Vec::new()));
    let kept = first.clone();
    let keep: Keep = Box::new(move |read: &[u8]| {
        let mut first = kept.lock().unwrap_or_else(|e| e.into_inner());
        let room = FIRST_BYTES.saturating_sub(first.len());
        first.extend_from_slice(&read[..read.len().min(room)]);
    });
    (InspectReader::new(inner, keep), first)
}

/// The first bytes recorded so far.
pub(super) fn first_bytes(first: &Mutex<Vec<u8>>) -> Vec<u8> {
    first.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// True when `bytes` start like a TLS record (handshake, alert, ...).
pub(super) fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x14..=0x18, 0x03, ..])
}

/// True when `bytes` start with an RPC reply record (mark, then the start of a reply).
pub(super) fn looks_like_rpc_reply(bytes: &[u8]) -> bool {
    bytes.get(RECORD_MARK_LEN..).is_some_and(looks_like_reply)
}

/// Printable start of a peer's answer.
pub(super) fn snippet(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(48)];
    let mut text = String::from("\"");
    text.push_str(&shown.escape_ascii().to_string());
    if bytes.len() > shown.len() {
        text.push('…');
    }
    text.push('"');
    text
}

/// What a plaintext NFS NULL call got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// An RPC reply with SUCCESS.
    Answered,
    /// An RPC reply refusing the call (AUTH_ERROR is "access denied").
    Refused(String),
    /// Bytes that are not an RPC reply.
    Bytes(Vec<u8>),
    /// Connection closed without an answer.
    Closed,
    /// No answer in time.
    Silent,
    /// The probe's own connection failed.
    NoConnection(String),
}

/// Sends an NFS v4 NULL call in plaintext on a new connection: does the peer speak NFS?
pub async fn plaintext_probe(addr: SocketAddr, limit: Duration) -> Probe {
    let work = async {
        let mut stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => return Probe::NoConnection(e.to_string()),
        };
        let xid: u32 = rand::random();
        let record = match Record::from_message(&nfs4::null_call(xid)) {
            Ok(record) => record,
            Err(e) => return Probe::NoConnection(format!("cannot frame the NULL call: {e}")),
        };
        if let Err(e) = stream.write_all(record.wire()).await {
            return Probe::NoConnection(e.to_string());
        }
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) if buf.is_empty() => return Probe::Closed,
                Ok(0) | Err(_) => return Probe::Bytes(buf),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if let Some(probe) = answer(&buf) {
                return probe;
            }
        }
    };
    timeout(limit, work).await.unwrap_or(Probe::Silent)
}

/// What the bytes received so far say, or `None` to read on.
fn answer(buf: &[u8]) -> Option<Probe> {
    let len = RecordMark::peek(buf)?.len;
    if !looks_like_rpc_reply(buf) && buf.len() >= 16 {
        return Some(Probe::Bytes(buf.to_vec()));
    }
    if buf.len() < 4 + len && buf.len() < 4096 {
        return None;
    }
    let message = &buf[4..buf.len().min(4 + len)];
    Some(match RpcMessage::decode(message) {
        Ok((header, _)) if matches!(header.body, MessageBody::Reply(_)) => {
            match efs_rpc::parse_accepted_reply(message) {
                Ok(_) => Probe::Answered,
                Err(e) => Probe::Refused(e.to_string()),
            }
        }
        _ => Probe::Bytes(buf.to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_told_apart_by_their_first_bytes() {
        assert!(looks_like_tls(&[0x16, 0x03, 0x03, 0x00, 0x10]));
        assert!(looks_like_tls(&[0x15, 0x03, 0x03, 0x00, 0x02]));
        assert!(!looks_like_tls(b"HTTP/1.1 400 Bad Request"));
        let record = efs_rpc::test_util::reply_record(7, efs_rpc::AcceptStat::Success);
        assert!(looks_like_rpc_reply(record.wire()));
        assert!(!looks_like_rpc_reply(b"SSH-2.0-OpenSSH_9.2p1 Debian"));
        assert_eq!(snippet(b"ab\r\n\x00"), "\"ab\\r\\n\\x00\"");
    }
}
