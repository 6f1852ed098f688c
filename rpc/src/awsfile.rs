//! The AWSFILE RPC program (400123, version 1) spoken by EFS and S3 Files mount targets before
//! NFS traffic: `bind_client_to_partition` ties a proxy's connection to an NFS state partition.
//!
//! Types follow `src/proxy/src/xdr/awsfile_prot.x` of efs-utils 3.2.0; the layouts, with worked
//! hex, are in `docs/protocol.md` §4. Only the bind procedure is implemented;
//! `awsfile_channel_init` exists to enable direct S3 reads, which this project deliberately
//! never does, so there is no code for it (`docs/protocol.md` §4.6).

use std::io::Write;

use crate::message::{CallHeader, RpcMessage};
use crate::peek::{ReplyError, parse_accepted_reply};
use crate::xdr::{
    self, CodecResult, Pack, Unpack, XdrError, pack_opaque_fixed, pack_opaque_flex,
    unpack_opaque_fixed, unpack_opaque_flex, unpack_string_lossy, unpack_u32,
};

/// `AWSFILE_PROGRAM_NUMBER`.
pub const PROGRAM: u32 = 400_123;
/// The program version.
pub const VERSION: u32 = 1;
/// The callback program number (unused by a proxy without direct S3 reads).
pub const CALLBACK_PROGRAM: u32 = 400_124;

/// Procedure numbers of program 400123 version 1.
pub mod procedure {
    /// The NULL procedure.
    pub const NULL: u32 = 0;
    /// `NFSPROC4_COMPOUND` under the AWSFILE program (direct S3 reads only).
    pub const COMPOUND: u32 = 1;
    /// `bind_client_to_partition(ProxyIdentifier) -> BindClientResponse`.
    pub const BIND_CLIENT_TO_PARTITION: u32 = 2;
    /// `awsfile_channel_init` (direct S3 reads only; never sent by this project).
    pub const CHANNEL_INIT: u32 = 3;
}

/// Maximum length of `ProxyIdentifier.identifier`.
pub const IDENTIFIER_LEN: usize = 16;
/// Maximum length of `ProxyIdentifier.incarnation`.
pub const INCARNATION_LEN: usize = 8;
/// Length of an `NfsStatePartitionId`.
pub const PARTITION_ID_LEN: usize = 64;

/// `ProxyIdentifier { opaque identifier<16>; opaque incarnation<8>; }`: who is binding.
///
/// efs-proxy sends 16 random bytes chosen once per process and a big-endian `i64` incarnation
/// counter; a decoder must still accept any lengths up to the maxima.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyIdentifier {
    /// Names the proxy process: a version-4 UUID chosen once per process (up to
    /// [`IDENTIFIER_LEN`] bytes on the wire).
    pub identifier: Vec<u8>,
    /// Names the client connection: a counter the proxy advances per client connection;
    /// every server connection of that client connection (scale-up ones included) binds with
    /// the same value (up to [`INCARNATION_LEN`] bytes; see
    /// [`ProxyIdentifier::incarnation_number`]).
    pub incarnation: Vec<u8>,
}

impl ProxyIdentifier {
    /// The identifier efs-proxy sends: a process id and an incarnation number.
    pub fn new(identifier: [u8; IDENTIFIER_LEN], incarnation: i64) -> Self {
        ProxyIdentifier {
            identifier: identifier.to_vec(),
            incarnation: incarnation.to_be_bytes().to_vec(),
        }
    }

    /// The incarnation as a number, when it has the usual 8 bytes.
    pub fn incarnation_number(&self) -> Option<i64> {
        <[u8; 8]>::try_from(self.incarnation.as_slice())
            .ok()
            .map(i64::from_be_bytes)
    }
}

impl<W: Write> Pack<W> for ProxyIdentifier {
    fn pack(&self, out: &mut W) -> CodecResult<usize> {
        Ok(pack_opaque_flex(&self.identifier, IDENTIFIER_LEN, out)?
            + pack_opaque_flex(&self.incarnation, INCARNATION_LEN, out)?)
    }
}

impl Unpack<&[u8]> for ProxyIdentifier {
    fn unpack(input: &mut &[u8]) -> CodecResult<(Self, usize)> {
        let before = input.len();
        let identifier = unpack_opaque_flex(input, IDENTIFIER_LEN)?;
        let incarnation = unpack_opaque_flex(input, INCARNATION_LEN)?;
        let value = ProxyIdentifier {
            identifier,
            incarnation,
        };
        Ok((value, before - input.len()))
    }
}

/// `NfsStatePartitionId`: 64 opaque bytes naming the server-side partition of NFS state.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartitionId(pub [u8; PARTITION_ID_LEN]);

impl std::fmt::Debug for PartitionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PartitionId({self})")
    }
}

impl std::fmt::Display for PartitionId {
    /// The first 8 bytes in hex: enough to tell partitions apart in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

/// `ScaleUpConfig`: when and how far a proxy may open more connections to the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleUpConfig {
    /// How many server connections one client connection may be spread over.
    pub max_multiplexed_connections: i32,
    /// Traffic (bytes per second, both directions) above which the proxy opens more
    /// connections, up to `max_multiplexed_connections`.
    pub scale_up_bytes_per_sec_threshold: i32,
    /// Sent by the server, unused by efs-proxy 3.2.0.
    pub scale_up_threshold_breached_duration_sec: i32,
    /// Sent by the server, unused by efs-proxy 3.2.0.
    pub scale_up_lookback_window_size_sec: i32,
}

impl Default for ScaleUpConfig {
    /// efs-proxy's default when the server sent none: 5 connections above 300 MiB/s.
    fn default() -> Self {
        ScaleUpConfig {
            max_multiplexed_connections: 5,
            scale_up_bytes_per_sec_threshold: 300 * 1024 * 1024,
            scale_up_threshold_breached_duration_sec: 1,
            scale_up_lookback_window_size_sec: 1,
        }
    }
}

impl<W: Write> Pack<W> for ScaleUpConfig {
    fn pack(&self, out: &mut W) -> CodecResult<usize> {
        Ok(self.max_multiplexed_connections.pack(out)?
            + self.scale_up_bytes_per_sec_threshold.pack(out)?
            + self.scale_up_threshold_breached_duration_sec.pack(out)?
            + self.scale_up_lookback_window_size_sec.pack(out)?)
    }
}

impl Unpack<&[u8]> for ScaleUpConfig {
    fn unpack(input: &mut &[u8]) -> CodecResult<(Self, usize)> {
        let value = ScaleUpConfig {
            max_multiplexed_connections: i32::unpack(input)?.0,
            scale_up_bytes_per_sec_threshold: i32::unpack(input)?.0,
            scale_up_threshold_breached_duration_sec: i32::unpack(input)?.0,
            scale_up_lookback_window_size_sec: i32::unpack(input)?.0,
        };
        Ok((value, 16))
    }
}

/// The `BindResponse` union: the server's answer to a bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindResponse {
    /// `RETRY` (0): try another connection.
    Retry(String),
    /// `RETRY_LATER` (1): back off.
    RetryLater(String),
    /// `PREFERRED` (2): bound, but another partition is preferred.
    Preferred(PartitionId),
    /// `READY` (3): bound to this partition.
    Ready(PartitionId),
    /// `ERROR` (4): the bind failed.
    Error(String),
    /// Any other discriminant: the union's default arm is `void`.
    Unknown(i32),
}

impl BindResponse {
    fn discriminant(&self) -> i32 {
        match self {
            BindResponse::Retry(_) => 0,
            BindResponse::RetryLater(_) => 1,
            BindResponse::Preferred(_) => 2,
            BindResponse::Ready(_) => 3,
            BindResponse::Error(_) => 4,
            BindResponse::Unknown(d) => *d,
        }
    }

    /// The partition, for `READY`.
    pub fn ready_partition(&self) -> Option<PartitionId> {
        match self {
            BindResponse::Ready(p) => Some(*p),
            _ => None,
        }
    }
}

/// Longest diagnostic string accepted in a bind response. The .x file leaves it unbounded; the
/// record limit bounds it anyway, this keeps a log line readable.
pub const MAX_BIND_MESSAGE: usize = 64 * 1024;

impl<W: Write> Pack<W> for BindResponse {
    fn pack(&self, out: &mut W) -> CodecResult<usize> {
        let mut n = self.discriminant().pack(out)?;
        n += match self {
            BindResponse::Retry(s) | BindResponse::RetryLater(s) | BindResponse::Error(s) => {
                pack_opaque_flex(s.as_bytes(), MAX_BIND_MESSAGE, out)?
            }
            BindResponse::Preferred(p) | BindResponse::Ready(p) => pack_opaque_fixed(&p.0, out)?,
            BindResponse::Unknown(_) => 0,
        };
        Ok(n)
    }
}

impl Unpack<&[u8]> for BindResponse {
    fn unpack(input: &mut &[u8]) -> CodecResult<(Self, usize)> {
        let before = input.len();
        let value = match unpack_u32(input)? as i32 {
            0 => BindResponse::Retry(unpack_string_lossy(input, MAX_BIND_MESSAGE)?),
            1 => BindResponse::RetryLater(unpack_string_lossy(input, MAX_BIND_MESSAGE)?),
            2 => BindResponse::Preferred(PartitionId(unpack_opaque_fixed(input)?)),
            3 => BindResponse::Ready(PartitionId(unpack_opaque_fixed(input)?)),
            4 => BindResponse::Error(unpack_string_lossy(input, MAX_BIND_MESSAGE)?),
            other => BindResponse::Unknown(other),
        };
        Ok((value, before - input.len()))
    }
}

/// `BindClientResponse { BindResponse bind_response; ScaleUpConfig scale_up_config; }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindClientResponse {
    /// Whether the connection is bound, and to which partition.
    pub bind_response: BindResponse,
    /// The server's limits for spreading traffic over more connections.
    pub scale_up_config: ScaleUpConfig,
}

impl<W: Write> Pack<W> for BindClientResponse {
    fn pack(&self, out: &mut W) -> CodecResult<usize> {
        Ok(self.bind_response.pack(out)? + self.scale_up_config.pack(out)?)
    }
}

impl Unpack<&[u8]> for BindClientResponse {
    fn unpack(input: &mut &[u8]) -> CodecResult<(Self, usize)> {
        let (bind_response, a) = BindResponse::unpack(input)?;
        let (scale_up_config, b) = ScaleUpConfig::unpack(input)?;
        let value = BindClientResponse {
            bind_response,
            scale_up_config,
        };
        Ok((value, a + b))
    }
}

/// Encodes the RPC message of a `bind_client_to_partition` call (AUTH_NONE, as efs-proxy).
/// Frame it with [`crate::Record::from_message`] to send it.
pub fn bind_call(xid: u32, id: &ProxyIdentifier) -> Result<Vec<u8>, XdrError> {
    let header = RpcMessage::call(
        xid,
        CallHeader::new(PROGRAM, VERSION, procedure::BIND_CLIENT_TO_PARTITION),
    );
    header.encode_with_body(&xdr::to_vec(id)?)
}

/// Decodes a `bind_client_to_partition` call: its xid and proxy identifier. Used by servers
/// (the test mount target).
pub fn parse_bind_call(message: &[u8]) -> Result<(u32, ProxyIdentifier), BindCallError> {
    let (header, args) = RpcMessage::decode(message)?;
    let crate::MessageBody::Call(call) = header.body else {
        return Err(BindCallError::NotACall);
    };
    if (call.program, call.version, call.procedure)
        != (PROGRAM, VERSION, procedure::BIND_CLIENT_TO_PARTITION)
    {
        return Err(BindCallError::OtherProcedure {
            program: call.program,
            version: call.version,
            procedure: call.procedure,
        });
    }
    Ok((header.xid, xdr::from_slice_exact(args)?))
}

/// Why a message is not a `bind_client_to_partition` call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindCallError {
    /// The RPC header or the `ProxyIdentifier` arguments do not decode.
    #[error("malformed bind call: {0}")]
    Malformed(#[from] XdrError),
    /// The message is a reply, not a call.
    #[error("expected an RPC call, got a reply")]
    NotACall,
    /// A call, but to another program, version or procedure.
    #[error(
        "expected AWSFILE bind_client_to_partition, got program {program} version {version} procedure {procedure}"
    )]
    OtherProcedure {
        /// The called program number.
        program: u32,
        /// The called program version.
        version: u32,
        /// The called procedure number.
        procedure: u32,
    },
}

/// Encodes the RPC message of a successful reply to a bind call. Used by servers.
pub fn bind_reply(xid: u32, response: &BindClientResponse) -> Result<Vec<u8>, XdrError> {
    let header = RpcMessage::reply(
        xid,
        crate::ReplyHeader::accepted(crate::AcceptStat::Success),
    );
    header.encode_with_body(&xdr::to_vec(response)?)
}

/// A decoded reply to a bind call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindReply {
    /// The reply's transaction id; equals the call's.
    pub xid: u32,
    /// The decoded procedure result.
    pub response: BindClientResponse,
    /// Bytes of the record after the `BindClientResponse`, ignored (as efs-proxy does, so a
    /// future extension of the reply does not turn every bind into a refusal).
    pub trailing: usize,
}

/// Decodes the reply to a bind call. Any RPC-level refusal (PROG_UNAVAIL from a plain NFS
/// server, a denied reply) and any undecodable body are errors; the caller decides what they
/// mean (efs-proxy: reconnect and forward without bind). Bytes after the response are counted
/// in [`BindReply::trailing`], not refused.
pub fn parse_bind_reply(message: &[u8]) -> Result<BindReply, ReplyError> {
    let (xid, mut results) = parse_accepted_reply(message)?;
    let (response, _) = BindClientResponse::unpack(&mut results).map_err(xdr::from_codec)?;
    Ok(BindReply {
        xid,
        response,
        trailing: results.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Record;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    fn partition() -> PartitionId {
        let mut p = [0u8; 64];
        for (i, b) in p.iter_mut().enumerate() {
            *b = 0xa0 + i as u8;
        }
        PartitionId(p)
    }

    /// `docs/protocol.md` §4.2: the bind call, 76 bytes.
    #[test]
    fn bind_call_matches_the_worked_hex() {
        let id = ProxyIdentifier::new([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], 1);
        let record = Record::from_message(&bind_call(0x1234_5678, &id).unwrap()).unwrap();
        let expected = hex(
            "80000048 12345678 00000000 00000002 00061afb 00000001 00000002
             00000000 00000000 00000000 00000000
             00000010 000102030405060708090a0b0c0d0e0f
             00000008 0000000000000001",
        );
        assert_eq!(record.wire().len(), 76);
        assert_eq!(&record.wire()[..], &expected[..]);
        assert_eq!(
            parse_bind_call(record.message()).unwrap(),
            (0x1234_5678, id)
        );
    }

    /// `docs/protocol.md` §4.3: the READY reply, 112 bytes.
    #[test]
    fn ready_reply_matches_the_worked_hex() {
        let mut expected =
            hex("8000006c 12345678 00000001 00000000 00000000 00000000 00000000 00000003");
        expected.extend(partition().0);
        expected.extend(hex("00000005 12c00000 00000001 00000001"));
        let response = BindClientResponse {
            bind_response: BindResponse::Ready(partition()),
            scale_up_config: ScaleUpConfig::default(),
        };
        let record = Record::from_message(&bind_reply(0x1234_5678, &response).unwrap()).unwrap();
        assert_eq!(record.wire().len(), 112);
        assert_eq!(&record.wire()[..], &expected[..]);
        let reply = parse_bind_reply(&expected[4..]).unwrap();
        assert_eq!(
            (reply.xid, reply.response, reply.trailing),
            (0x1234_5678, response, 0)
        );
    }

    /// `docs/protocol.md` §4.3: the RETRY_LATER("busy") body.
    #[test]
    fn retry_later_body_matches_the_worked_hex() {
        let response = BindClientResponse {
            bind_response: BindResponse::RetryLater("busy".into()),
            scale_up_config: ScaleUpConfig::default(),
        };
        let body = xdr::to_vec(&response).unwrap();
        assert_eq!(&body[..12], &hex("00000001 00000004 62757379")[..]);
        assert_eq!(body.len(), 12 + 16);
        assert_eq!(
            xdr::from_slice_exact::<BindClientResponse>(&body).unwrap(),
            response
        );
    }

    #[test]
    fn every_bind_response_round_trips() {
        let responses = [
            BindResponse::Retry("again".into()),
            BindResponse::RetryLater(String::new()),
            BindResponse::Preferred(partition()),
            BindResponse::Ready(partition()),
            BindResponse::Error("no such file system".into()),
            BindResponse::Unknown(99),
        ];
        for bind_response in responses {
            let response = BindClientResponse {
                bind_response,
                scale_up_config: ScaleUpConfig {
                    max_multiplexed_connections: 3,
                    scale_up_bytes_per_sec_threshold: -1,
                    scale_up_threshold_breached_duration_sec: 7,
                    scale_up_lookback_window_size_sec: 9,
                },
            };
            let message = bind_reply(42, &response).unwrap();
            let reply = parse_bind_reply(&message).unwrap();
            assert_eq!((reply.xid, reply.response), (42, response));
        }
    }

    #[test]
    fn malformed_bind_replies_are_errors() {
        let good = bind_reply(
            1,
            &BindClientResponse {
                bind_response: BindResponse::Ready(partition()),
                scale_up_config: ScaleUpConfig::default(),
            },
        )
        .unwrap();
        for len in 0..good.len() {
            assert!(parse_bind_reply(&good[..len]).is_err(), "prefix {len}");
        }
        // An ERROR string announcing 2^32-1 bytes.
        let mut huge = good[..24].to_vec();
        huge.extend(hex("00000004 ffffffff 00000000"));
        assert!(matches!(
            parse_bind_reply(&huge).unwrap_err(),
            ReplyError::Malformed(XdrError::TooLong(_))
        ));
    }

    #[test]
    fn bytes_after_the_response_are_counted_not_refused() {
        let response = BindClientResponse {
            bind_response: BindResponse::Ready(partition()),
            scale_up_config: ScaleUpConfig::default(),
        };
        let mut message = bind_reply(9, &response).unwrap();
        message.extend([0, 0, 0, 1, 0xde, 0xad]);
        let reply = parse_bind_reply(&message).unwrap();
        assert_eq!(
            (reply.xid, reply.response, reply.trailing),
            (9, response, 6)
        );
    }

    #[test]
    fn plain_nfs_server_refusal_is_an_rpc_error() {
        // ganesha answers program 400123 with PROG_UNAVAIL (`docs/protocol.md` §4.3).
        let message = RpcMessage::reply(
            3,
            crate::ReplyHeader::accepted(crate::AcceptStat::ProgUnavail),
        )
        .encode()
        .unwrap();
        assert_eq!(
            parse_bind_reply(&message).unwrap_err(),
            ReplyError::ProgUnavail
        );
    }

    #[test]
    fn identifiers_of_any_legal_length_decode() {
        let id = ProxyIdentifier {
            identifier: vec![1, 2, 3],
            incarnation: vec![],
        };
        let bytes = xdr::to_vec(&id).unwrap();
        assert_eq!(
            xdr::from_slice_exact::<ProxyIdentifier>(&bytes).unwrap(),
            id
        );
        assert_eq!(id.incarnation_number(), None);
        assert_eq!(
            ProxyIdentifier::new([0; 16], -2).incarnation_number(),
            Some(-2)
        );
        let too_long = ProxyIdentifier {
            identifier: vec![0; 17],
            incarnation: vec![],
        };
        assert!(xdr::to_vec(&too_long).is_err());
    }
}
