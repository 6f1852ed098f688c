//! The AWSFILE `bind_client_to_partition` exchange on a fresh server connection, and the
//! proxy identity it carries.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use efs_rpc::awsfile::{self, BindClientResponse, ProxyIdentifier};
use efs_rpc::{Record, RecordCodec};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::Decoder;
use tracing::debug;

use crate::error::BindError;

/// Set once bytes after a bind reply have been logged.
static TRAILING_LOGGED: AtomicBool = AtomicBool::new(false);

/// Who this proxy is to the server: a random UUID (version 4) chosen once per process, and an
/// incarnation counter incremented for every accepted client connection (efs-proxy's
/// `ProxyIdentifier`, whose identifier is `Uuid::new_v4()`).
#[derive(Debug)]
pub(crate) struct ProxyIdentity {
    id: [u8; awsfile::IDENTIFIER_LEN],
    incarnation: AtomicI64,
}

impl Default for ProxyIdentity {
    fn default() -> Self {
        Self::new(uuid_v4(rand::random()))
    }
}

/// Random bytes made a version-4 UUID (RFC 9562 §5.4): version 4 in the high nibble of byte 6,
/// variant `10` in the top bits of byte 8, 122 random bits left. Done by hand rather than with
/// the `uuid` crate: two bit operations do not need a dependency.
pub(crate) fn uuid_v4(mut bytes: [u8; awsfile::IDENTIFIER_LEN]) -> [u8; awsfile::IDENTIFIER_LEN] {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    bytes
}

impl ProxyIdentity {
    pub(crate) fn new(id: [u8; awsfile::IDENTIFIER_LEN]) -> Self {
        ProxyIdentity {
            id,
            incarnation: AtomicI64::new(0),
        }
    }

    /// The identifier for the next client connection (incarnations start at 1).
    pub(crate) fn next_incarnation(&self) -> ProxyIdentifier {
        let n = self.incarnation.fetch_add(1, Ordering::Relaxed) + 1;
        ProxyIdentifier::new(self.id, n)
    }
}

/// Sends `bind_client_to_partition` and reads its reply.
///
/// Returns the decoded response and any bytes the server sent after the reply (to be
/// forwarded to the client). Reads are bounded by `max_record_size` and the whole exchange by
/// `limit`.
pub(crate) async fn bind_client_to_partition<S>(
    stream: &mut S,
    id: &ProxyIdentifier,
    max_record_size: usize,
    limit: Duration,
) -> Result<(BindClientResponse, BytesMut), BindError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let exchange = async {
        let xid: u32 = rand::random();
        let call = awsfile::bind_call(xid, id).map_err(efs_rpc::ReplyError::from)?;
        let record = Record::from_message(&call)?;
        stream.write_all(record.wire()).await?;
        stream.flush().await?;

        let mut codec = RecordCodec::new(max_record_size);
        let mut buf = BytesMut::with_capacity(512);
        let reply = loop {
            if let Some(reply) = codec.decode(&mut buf)? {
                break reply;
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(BindError::Closed);
            }
        };
        let reply = awsfile::parse_bind_reply(reply.message())?;
        if reply.xid != xid {
            return Err(BindError::XidMismatch {
                sent: xid,
                got: reply.xid,
            });
        }
        if reply.trailing > 0 && !TRAILING_LOGGED.swap(true, Ordering::Relaxed) {
            debug!(
                "bind: {} bytes after the BindClientResponse in the reply ignored (a newer \
                 server's extension?); logged once",
                reply.trailing
            );
        }
        Ok((reply.response, buf))
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| BindError::Timeout(limit))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnations_count_up_from_one_with_a_fixed_id() {
        let identity = ProxyIdentity::new([7; 16]);
        let a = identity.next_incarnation();
        let b = identity.next_incarnation();
        assert_eq!(a.identifier, vec![7; 16]);
        assert_eq!(a.incarnation_number(), Some(1));
        assert_eq!(b.incarnation_number(), Some(2));
    }

    #[test]
    fn the_process_identifier_is_a_version_4_uuid() {
        for _ in 0..64 {
            let id = ProxyIdentity::default().next_incarnation().identifier;
            assert_eq!(id[6] >> 4, 4, "version nibble of {id:02x?}");
            assert_eq!(id[8] >> 6, 0b10, "variant bits of {id:02x?}");
        }
        assert_eq!(
            uuid_v4([0xff; 16]),
            [
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x4f, 0xff, 0xbf, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff
            ]
        );
        assert_eq!(uuid_v4([0; 16])[6..9], [0x40, 0, 0x80]);
    }

    #[test]
    fn process_identities_differ() {
        let a = ProxyIdentity::default().next_incarnation();
        let b = ProxyIdentity::default().next_incarnation();
        assert_ne!(a.identifier, b.identifier);
    }
}
