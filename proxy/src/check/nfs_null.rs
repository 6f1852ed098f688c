//! The NFS NULL step: one NFS v4 NULL call on the bound connection, as a client's first call
//! would go, and its reply.

use std::time::Instant;

use bytes::BytesMut;
use efs_rpc::{Record, RecordCodec, ReplyError, nfs4};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use tokio_util::codec::Decoder;

use super::tls::CheckStream;
use super::{Plan, Report, Step, StepName};

/// Sends the call after the bind (`buf`: bytes already read past the bind reply).
pub(super) async fn step(
    plan: &Plan,
    stream: &mut CheckStream,
    mut buf: BytesMut,
    report: &mut Report,
) {
    let start = Instant::now();
    let xid: u32 = rand::random();
    let exchange = async {
        let record = Record::from_message(&nfs4::null_call(xid)).map_err(|e| e.to_string())?;
        stream
            .write_all(record.wire())
            .await
            .map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let mut codec = RecordCodec::new(efs_rpc::DEFAULT_MAX_RECORD_SIZE);
        loop {
            if let Some(reply) = codec.decode(&mut buf).map_err(|e| e.to_string())? {
                return Ok(reply);
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) => return Err("the server closed the connection".to_string()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let fail =
        |detail: String, fix: &str| Step::fail(StepName::NfsNull, start.elapsed(), detail, fix);
    let step = match timeout(plan.bind_timeout, exchange).await {
        Err(_) => fail(
            format!(
                "no answer to the NFS NULL call within {:?}",
                plan.bind_timeout
            ),
            "the mount target bound the connection but does not answer NFS: check its state",
        ),
        Ok(Err(e)) => fail(
            format!("the NFS NULL call failed: {e}"),
            "the mount target bound the connection but dropped NFS: check its state",
        ),
        Ok(Ok(reply)) => match efs_rpc::parse_accepted_reply(reply.message()) {
            Ok((got, _)) if got == xid => Step::pass(
                StepName::NfsNull,
                start.elapsed(),
                format!("NFS v{} NULL answered", nfs4::VERSION),
            ),
            Ok((got, _)) => fail(
                format!("the reply's xid {got:#010x} is not the call's {xid:#010x}"),
                "the server mixed up replies",
            ),
            Err(ReplyError::AuthError(stat)) => fail(
                format!("access denied: AUTH_ERROR {}", stat.0),
                "the file system policy refuses this identity: it must allow s3files:ClientMount \
                 or elasticfilesystem:ClientMount",
            ),
            Err(e) => fail(
                format!("the NFS NULL call was refused: {e}"),
                "the server is not an NFSv4 server",
            ),
        },
    };
    report.push(step);
}
