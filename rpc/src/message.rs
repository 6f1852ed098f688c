//! ONC RPC version 2 messages (RFC 5531 §8–§9): calls, replies, and authentication flavours.
//!
//! Only the message *header* is modelled; the procedure arguments or results follow it in the
//! same record and stay opaque bytes here. [`RpcMessage::decode`] returns the header and the
//! remaining slice; [`RpcMessage::encode`] writes the header, after which the caller appends
//! the body.

use std::io::Write;

use crate::xdr::{
    self, CodecResult, Pack, Unpack, XdrError, pack_opaque_flex, unpack_opaque_flex, unpack_u32,
};

/// The only RPC protocol version (RFC 5531 §9).
pub const RPC_VERSION: u32 = 2;
/// Maximum length of an authentication body (RFC 5531 §8.2).
pub const MAX_AUTH_BYTES: usize = 400;
/// Maximum length of an AUTH_SYS machine name (RFC 5531 appendix A).
pub const MAX_MACHINE_NAME: usize = 255;
/// Maximum number of AUTH_SYS supplementary groups (RFC 5531 appendix A).
pub const MAX_AUTH_SYS_GIDS: usize = 16;

/// `msg_type`.
pub(crate) const CALL: u32 = 0;
pub(crate) const REPLY: u32 = 1;
/// `reply_stat`.
pub(crate) const MSG_ACCEPTED: u32 = 0;
pub(crate) const MSG_DENIED: u32 = 1;
/// `reject_stat`.
const RPC_MISMATCH: u32 = 0;
const AUTH_ERROR: u32 = 1;

/// An authentication flavour number (`auth_flavor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthFlavor(pub u32);

impl AuthFlavor {
    /// `AUTH_NONE`: no credentials.
    pub const NONE: AuthFlavor = AuthFlavor(0);
    /// `AUTH_SYS` (formerly AUTH_UNIX): uid, gid and groups.
    pub const SYS: AuthFlavor = AuthFlavor(1);
    /// `AUTH_SHORT`.
    pub const SHORT: AuthFlavor = AuthFlavor(2);
    /// `AUTH_DH`.
    pub const DH: AuthFlavor = AuthFlavor(3);
    /// `RPCSEC_GSS`.
    pub const RPCSEC_GSS: AuthFlavor = AuthFlavor(6);
}

/// `opaque_auth`: a flavour and up to 400 bytes of flavour-specific body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueAuth {
    /// Which authentication scheme `body` belongs to.
    pub flavor: AuthFlavor,
    /// The flavour's XDR-encoded parameters (empty for `AUTH_NONE`), at most
    /// [`MAX_AUTH_BYTES`].
    pub body: Vec<u8>,
}

impl OpaqueAuth {
    /// `AUTH_NONE` with an empty body.
    pub fn none() -> Self {
        OpaqueAuth {
            flavor: AuthFlavor::NONE,
            body: Vec::new(),
        }
    }

    /// Decodes the body as `AUTH_SYS` parameters, if this is an `AUTH_SYS` credential.
    pub fn auth_sys(&self) -> Option<Result<AuthSys, XdrError>> {
        (self.flavor == AuthFlavor::SYS).then(|| xdr::from_slice_exact(&self.body))
    }
}

impl<W: Write> Pack<W> for OpaqueAuth {
    fn pack(&self, out: &mut W) -> CodecResult<usize> {
        Ok(self.flavor.0.pack(out)? + pack_opaque_flex(&self.body, MAX_AUTH_BYTES, out)?)
    }
}

impl Unpack<&[u8]> for OpaqueAuth {
    fn unpack(input: &mut &[u8]) -> CodecResult<(Self, usize)> {
        let before = input.len();
        let flavor = AuthFlavor(unpack_u32(input)?);
        let body = unpack_opaque_flex(input, MAX_AUTH_BYTES)?;
        Ok((OpaqueAuth { flavor, body }, before - input.len()))
    }
}

/// `authsys_parms`: the body of an `AUTH_SYS` credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSys {
    /// An arbitrary id the client chooses; servers do not interpret it.
    pub stamp: u32,
    /// The caller's host name, at most [`MAX_MACHINE_NAME`] bytes.
    pub machine_name: String,
    /// The caller's effective user id.
    pub uid: u32,
    /// The caller's effective group id.
    pub gid: u32,
    /// Supplementary group ids, at most [`MAX_AUTH_SYS_GIDS`].
    pub gids: Vec<u32>,
}

impl AuthSys {
    /// Encodes these parameters as an `AUTH_SYS` credential.
    pub fn to_opaque_auth(&self) -> Result<OpaqueAuth, XdrError> {
        Ok(OpaqueAuth {
            flavor: AuthFlavor::SYS,
            body: xdr::to_vec(self)?,
        })
    }
}

impl<W: Write> Pack<W> for AuthSys {
    fn pack(&self, out: &mut W) -> CodecResult<usize> {
        let mut n = self.stamp.pack(out)?;
        n += xdr_codec::pack_string(&self.machine_name, Some(MAX_MACHINE_NAME), out)?;
        n += self.uid.pack(out)?;
        n += self.gid.pack(out)?;
        n += xdr_codec::pack_flex(&self.gids, Some(MAX_AUTH_SYS_GIDS), out)?;
        Ok(n)
    }
}

impl Unpack<&[u8]> for AuthSys {
    fn unpack(input: &mut &[u8]) -> CodecResult<(Self, usize)> {
        let before = input.len();
        let stamp = unpack_u32(input)?;
        let name = unpack_opaque_flex(input, MAX_MACHINE_NAME)?;
        let machine_name = String::from_utf8(name)?;
        let uid = unpack_u32(input)?;
        let gid = unpack_u32(input)?;
        let count = unpack_u32(input)? as usize;
        if count > MAX_AUTH_SYS_GIDS {
            return Err(xdr_codec::Error::invalidlen(count));
        }
        let gids = (0..count)
            .map(|_| unpack_u32(input))
            .collect::<CodecResult<Vec<u32>>>()?;
        let value = AuthSys {
            stamp,
            machine_name,
            uid,
            gid,
            gids,
        };
        Ok((value, before - input.len()))
    }
}

/// `call_body`, without the procedure arguments that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallHeader {
    /// `rpcvers`: the RPC protocol version, [`RPC_VERSION`] (2) in any call a server accepts.
    pub rpc_version: u32,
    /// `prog`: the remote program number (100003 for NFS, 400123 for AWSFILE).
    pub program: u32,
    /// `vers`: the version of that program.
    pub version: u32,
    /// `proc`: the procedure within the program version (0 is NULL by convention).
    pub procedure: u32,
    /// `cred`: who the caller claims to be.
    pub credential: OpaqueAuth,
    /// `verf`: proof of the credential for flavours that have one (`AUTH_NONE` otherwise).
    pub verifier: OpaqueAuth,
}

impl CallHeader {
    /// A version-2 call with `AUTH_NONE` credential and verifier.
    pub fn new(program: u32, version: u32, procedure: u32) -> Self {
        CallHeader {
            rpc_version: RPC_VERSION,
            program,
            version,
            procedure,
            credential: OpaqueAuth::none(),
            verifier: OpaqueAuth::none(),
        }
    }
}

/// `accept_stat` of an accepted reply, with the version range of `PROG_MISMATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptStat {
    /// The call executed; results follow.
    Success,
    /// The program is not served here.
    ProgUnavail,
    /// The program is served, but not this version.
    ProgMismatch {
        /// The lowest version of the program the server supports.
        low: u32,
        /// The highest version of the program the server supports.
        high: u32,
    },
    /// The procedure does not exist in this program version.
    ProcUnavail,
    /// The server could not decode the arguments.
    GarbageArgs,
    /// The server failed (e.g. memory allocation).
    SystemErr,
}

impl AcceptStat {
    fn code(self) -> u32 {
        match self {
            AcceptStat::Success => 0,
            AcceptStat::ProgUnavail => 1,
            AcceptStat::ProgMismatch { .. } => 2,
            AcceptStat::ProcUnavail => 3,
            AcceptStat::GarbageArgs => 4,
            AcceptStat::SystemErr => 5,
        }
    }
}

/// `auth_stat`: why the server rejected the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthStat(pub u32);

/// The values RFC 5531 §9 (and RFC 2203 for RPCSEC_GSS) defines. The set is open, so a value
/// not listed here is still carried as is.
impl AuthStat {
    /// `AUTH_OK`: success (not sent in an `AUTH_ERROR` reply).
    pub const OK: AuthStat = AuthStat(0);
    /// `AUTH_BADCRED`: the credential is malformed (bad seal).
    pub const BADCRED: AuthStat = AuthStat(1);
    /// `AUTH_REJECTEDCRED`: the client must begin a new session.
    pub const REJECTEDCRED: AuthStat = AuthStat(2);
    /// `AUTH_BADVERF`: the verifier is malformed (bad seal).
    pub const BADVERF: AuthStat = AuthStat(3);
    /// `AUTH_REJECTEDVERF`: the verifier expired or was replayed.
    pub const REJECTEDVERF: AuthStat = AuthStat(4);
    /// `AUTH_TOOWEAK`: the server requires a stronger flavour (e.g. refuses `AUTH_NONE`).
    pub const TOOWEAK: AuthStat = AuthStat(5);
    /// `AUTH_INVALIDRESP`: the response verifier is bogus.
    pub const INVALIDRESP: AuthStat = AuthStat(6);
    /// `AUTH_FAILED`: failed for a reason the server does not name.
    pub const FAILED: AuthStat = AuthStat(7);
    /// `AUTH_KERB_GENERIC`: Kerberos generic error.
    pub const KERB_GENERIC: AuthStat = AuthStat(8);
    /// `AUTH_TIMEEXPIRE`: the Kerberos credential's time expired.
    pub const TIMEEXPIRE: AuthStat = AuthStat(9);
    /// `AUTH_TKT_FILE`: a problem with the Kerberos ticket file.
    pub const TKT_FILE: AuthStat = AuthStat(10);
    /// `AUTH_DECODE`: the server could not decode the authenticator.
    pub const DECODE: AuthStat = AuthStat(11);
    /// `AUTH_NET_ADDR`: the ticket's network address is wrong.
    pub const NET_ADDR: AuthStat = AuthStat(12);
    /// `RPCSEC_GSS_CREDPROBLEM`: no credentials for the user (RFC 2203).
    pub const RPCSEC_GSS_CREDPROBLEM: AuthStat = AuthStat(13);
    /// `RPCSEC_GSS_CTXPROBLEM`: the GSS context is unknown or expired (RFC 2203).
    pub const RPCSEC_GSS_CTXPROBLEM: AuthStat = AuthStat(14);
}

/// `reply_body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyHeader {
    /// `MSG_ACCEPTED`: the server accepted the credentials; `stat` says what happened.
    Accepted {
        /// The server's verifier, authenticating the reply (`AUTH_NONE` for AUTH_SYS calls).
        verifier: OpaqueAuth,
        /// Whether the procedure ran; results follow only on [`AcceptStat::Success`].
        stat: AcceptStat,
    },
    /// `MSG_DENIED` with `RPC_MISMATCH`: the server does not speak RPC version 2.
    RpcMismatch {
        /// The lowest RPC protocol version the server supports.
        low: u32,
        /// The highest RPC protocol version the server supports.
        high: u32,
    },
    /// `MSG_DENIED` with `AUTH_ERROR`.
    AuthError(AuthStat),
}

impl ReplyHeader {
    /// An accepted reply with an `AUTH_NONE` verifier.
    pub fn accepted(stat: AcceptStat) -> Self {
        ReplyHeader::Accepted {
            verifier: OpaqueAuth::none(),
            stat,
        }
    }
}

/// The body of an RPC message: a call or a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageBody {
    /// `CALL`: a request to run a procedure.
    Call(CallHeader),
    /// `REPLY`: the answer to the call with the same xid.
    Reply(ReplyHeader),
}

/// An RPC message header: transaction id and call or reply header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcMessage {
    /// Transaction id: chosen by the caller, echoed in the reply so it can be matched to
    /// its call (replies on one connection may come out of order).
    pub xid: u32,
    /// The call or reply header after the xid.
    pub body: MessageBody,
}

impl RpcMessage {
    /// A call message.
    pub fn call(xid: u32, header: CallHeader) -> Self {
        RpcMessage {
            xid,
            body: MessageBody::Call(header),
        }
    }

    /// A reply message.
    pub fn reply(xid: u32, header: ReplyHeader) -> Self {
        RpcMessage {
            xid,
            body: MessageBody::Reply(header),
        }
    }

    /// Decodes a message header from an RPC message (a record without its record mark) and
    /// returns it with the bytes that follow it (arguments or results).
    pub fn decode(message: &[u8]) -> Result<(RpcMessage, &[u8]), XdrError> {
        let mut input = message;
        let (header, _) = RpcMessage::unpack(&mut input).map_err(xdr::from_codec)?;
        Ok((header, input))
    }

    /// Encodes the header into a new buffer; append the body after it.
    pub fn encode(&self) -> Result<Vec<u8>, XdrError> {
        xdr::to_vec(self)
    }

    /// Encodes the header followed by `body` into one message.
    pub fn encode_with_body(&self, body: &[u8]) -> Result<Vec<u8>, XdrError> {
        let mut out = self.encode()?;
        out.extend_from_slice(body);
        Ok(out)
    }
}

impl<W: Write> Pack<W> for RpcMessage {
    fn pack(&self, out: &mut W) -> CodecResult<usize> {
        let mut n = self.xid.pack(out)?;
        match &self.body {
            MessageBody::Call(call) => {
                n += CALL.pack(out)?;
                n += call.rpc_version.pack(out)?;
                n += call.program.pack(out)?;
                n += call.version.pack(out)?;
                n += call.procedure.pack(out)?;
                n += call.credential.pack(out)?;
                n += call.verifier.pack(out)?;
            }
            MessageBody::Reply(ReplyHeader::Accepted { verifier, stat }) => {
                n += REPLY.pack(out)?;
                n += MSG_ACCEPTED.pack(out)?;
                n += verifier.pack(out)?;
                n += stat.code().pack(out)?;
                if let AcceptStat::ProgMismatch { low, high } = stat {
                    n += low.pack(out)?;
                    n += high.pack(out)?;
                }
            }
            MessageBody::Reply(ReplyHeader::RpcMismatch { low, high }) => {
                n += REPLY.pack(out)?;
                n += MSG_DENIED.pack(out)?;
                n += RPC_MISMATCH.pack(out)?;
                n += low.pack(out)?;
                n += high.pack(out)?;
            }
            MessageBody::Reply(ReplyHeader::AuthError(stat)) => {
                n += REPLY.pack(out)?;
                n += MSG_DENIED.pack(out)?;
                n += AUTH_ERROR.pack(out)?;
                n += stat.0.pack(out)?;
            }
        }
        Ok(n)
    }
}

/// An undefined enum value (`msg_type`, `reply_stat`, `accept_stat` or `reject_stat`).
/// xdr-codec's error carries an `i32`, so the wire's bit pattern is kept as such.
fn bad(value: u32) -> xdr_codec::Error {
    xdr_codec::Error::invalidenum(value as i32)
}

impl Unpack<&[u8]> for RpcMessage {
    fn unpack(input: &mut &[u8]) -> CodecResult<(Self, usize)> {
        let before = input.len();
        let xid = unpack_u32(input)?;
        let body = match unpack_u32(input)? {
            CALL => {
                let rpc_version = unpack_u32(input)?;
                let program = unpack_u32(input)?;
                let version = unpack_u32(input)?;
                let procedure = unpack_u32(input)?;
                let (credential, _) = OpaqueAuth::unpack(input)?;
                let (verifier, _) = OpaqueAuth::unpack(input)?;
                MessageBody::Call(CallHeader {
                    rpc_version,
                    program,
                    version,
                    procedure,
                    credential,
                    verifier,
                })
            }
            REPLY => MessageBody::Reply(match unpack_u32(input)? {
                MSG_ACCEPTED => {
                    let (verifier, _) = OpaqueAuth::unpack(input)?;
                    let stat = match unpack_u32(input)? {
                        0 => AcceptStat::Success,
                        1 => AcceptStat::ProgUnavail,
                        2 => AcceptStat::ProgMismatch {
                            low: unpack_u32(input)?,
                            high: unpack_u32(input)?,
                        },
                        3 => AcceptStat::ProcUnavail,
                        4 => AcceptStat::GarbageArgs,
                        5 => AcceptStat::SystemErr,
                        other => return Err(bad(other)),
                    };
                    ReplyHeader::Accepted { verifier, stat }
                }
                MSG_DENIED => match unpack_u32(input)? {
                    RPC_MISMATCH => ReplyHeader::RpcMismatch {
                        low: unpack_u32(input)?,
                        high: unpack_u32(input)?,
                    },
                    AUTH_ERROR => ReplyHeader::AuthError(AuthStat(unpack_u32(input)?)),
                    other => return Err(bad(other)),
                },
                other => return Err(bad(other)),
            }),
            other => return Err(bad(other)),
        };
        Ok((RpcMessage { xid, body }, before - input.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(message: RpcMessage) {
        let bytes = message.encode_with_body(b"body").unwrap();
        let (decoded, rest) = RpcMessage::decode(&bytes).unwrap();
        assert_eq!(decoded, message);
        assert_eq!(rest, b"body");
    }

    #[test]
    fn every_reply_status_round_trips() {
        let stats = [
            AcceptStat::Success,
            AcceptStat::ProgUnavail,
            AcceptStat::ProgMismatch { low: 2, high: 4 },
            AcceptStat::ProcUnavail,
            AcceptStat::GarbageArgs,
            AcceptStat::SystemErr,
        ];
        for stat in stats {
            round_trip(RpcMessage::reply(7, ReplyHeader::accepted(stat)));
        }
        round_trip(RpcMessage::reply(
            8,
            ReplyHeader::RpcMismatch { low: 2, high: 2 },
        ));
        for code in 0..=14 {
            round_trip(RpcMessage::reply(9, ReplyHeader::AuthError(AuthStat(code))));
        }
    }

    #[test]
    fn calls_with_auth_none_and_auth_sys_round_trip() {
        round_trip(RpcMessage::call(1, CallHeader::new(100003, 4, 0)));
        let sys = AuthSys {
            stamp: 0x1234,
            machine_name: "client.example".into(),
            uid: 1000,
            gid: 1000,
            gids: vec![4, 24, 27],
        };
        let mut header = CallHeader::new(100003, 4, 1);
        header.credential = sys.to_opaque_auth().unwrap();
        round_trip(RpcMessage::call(2, header.clone()));
        assert_eq!(header.credential.auth_sys().unwrap().unwrap(), sys);
    }

    #[test]
    fn nfs_null_call_has_the_rfc_layout() {
        let bytes = RpcMessage::call(0x01020304, CallHeader::new(100003, 4, 0))
            .encode()
            .unwrap();
        let expected = hex::decode(concat!(
            "01020304", "00000000", "00000002", "000186a3", "00000004", "00000000", "00000000",
            "00000000", "00000000", "00000000"
        ))
        .unwrap();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        let good = RpcMessage::call(1, CallHeader::new(100003, 4, 0))
            .encode()
            .unwrap();
        for len in 0..good.len() {
            assert_eq!(
                RpcMessage::decode(&good[..len]).unwrap_err(),
                XdrError::Truncated,
                "prefix of {len} bytes"
            );
        }
        // msg_type 2, reply_stat 2, accept_stat 6, reject_stat 2.
        for bytes in [
            "0000000100000002",
            "000000010000000100000002",
            "0000000100000001000000000000000000000000", /* verf */
            "00000001000000010000000100000002",
        ] {
            let mut bytes = hex::decode(bytes).unwrap();
            if bytes.len() == 20 {
                bytes.extend([0, 0, 0, 6]);
            }
            assert!(matches!(
                RpcMessage::decode(&bytes),
                Err(XdrError::BadDiscriminant { .. })
            ));
        }
        // An auth body longer than 400 bytes.
        let mut long =
            hex::decode("00000001000000000000000200000001000000000000000000000001").unwrap();
        long.extend(401u32.to_be_bytes());
        long.extend([0u8; 404]);
        assert_eq!(
            RpcMessage::decode(&long).unwrap_err(),
            XdrError::TooLong(401)
        );
    }

    #[test]
    fn auth_sys_limits_are_enforced() {
        let too_many = AuthSys {
            stamp: 0,
            machine_name: "h".into(),
            uid: 0,
            gid: 0,
            gids: vec![0; 17],
        };
        assert!(too_many.to_opaque_auth().is_err());
        let mut body = xdr::to_vec(&AuthSys {
            gids: vec![],
            ..too_many
        })
        .unwrap();
        let n = body.len();
        body[n - 4..].copy_from_slice(&17u32.to_be_bytes());
        let cred = OpaqueAuth {
            flavor: AuthFlavor::SYS,
            body,
        };
        assert_eq!(cred.auth_sys().unwrap().unwrap_err(), XdrError::TooLong(17));
    }
}
