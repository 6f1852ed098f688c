//! The protocol layer: RPC records forwarded both ways between the NFS client and the server.
//!
//! Records are parsed only as far as record marking: each direction is bounded by the maximum
//! record size, and a multi-fragment record is reassembled into one fragment (as efs-proxy
//! does). Bytes are otherwise passed through verbatim; xids are not rewritten, because the
//! NFS client matches replies itself.
//!
//! When either side closes or sends an invalid record, forwarding stops and the other side is
//! shut down too, so the NFS client sees a closed connection and reconnects.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use efs_rpc::{Record, RecordCodec, RecordError};
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::stats::{Direction, Stats};

/// How long closing the other side may take before it is simply dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Why forwarding ended.
#[derive(Debug)]
pub enum ForwardEnd {
    /// The NFS client closed its connection (unmount, or reconnect).
    ClientClosed,
    /// The server closed its connection.
    ServerClosed,
    /// The client sent bytes that are not valid records, or its socket failed.
    ClientError(RecordError),
    /// The server sent bytes that are not valid records, or its socket failed.
    ServerError(RecordError),
}

impl std::fmt::Display for ForwardEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardEnd::ClientClosed => f.write_str("client closed the connection"),
            ForwardEnd::ServerClosed => f.write_str("server closed the connection"),
            ForwardEnd::ClientError(e) => write!(f, "client side failed: {e}"),
            ForwardEnd::ServerError(e) => write!(f, "server side failed: {e}"),
        }
    }
}

/// A failure while pumping one direction: reading from its source or writing to its sink.
enum PumpError {
    Read(RecordError),
    Write(RecordError),
}

/// Forwards records between `client` and `server` until one side ends, then shuts the other
/// down. `server_pending` holds bytes already read from the server (after the bind reply).
pub async fn forward<C, S>(
    client: C,
    server: S,
    server_pending: BytesMut,
    max_record_size: usize,
    stats: Arc<Stats>,
) -> ForwardEnd
where
    C: AsyncRead + AsyncWrite + Send,
    S: AsyncRead + AsyncWrite + Send,
{
    let (client_read, client_write) = tokio::io::split(client);
    let (server_read, server_write) = tokio::io::split(server);

    let mut from_client = FramedRead::new(client_read, RecordCodec::new(max_record_size));
    let mut to_server = FramedWrite::new(server_write, RecordCodec::new(max_record_size));
    let mut from_server = FramedRead::new(server_read, RecordCodec::new(max_record_size));
    from_server
        .read_buffer_mut()
        .extend_from_slice(&server_pending);
    let mut to_client = FramedWrite::new(client_write, RecordCodec::new(max_record_size));

    let end = {
        let up = pump(
            &mut from_client,
            &mut to_server,
            &stats,
            Direction::ToServer,
        );
        let down = pump(
            &mut from_server,
            &mut to_client,
            &stats,
            Direction::ToClient,
        );
        tokio::select! {
            r = up => match r {
                Ok(()) => ForwardEnd::ClientClosed,
                Err(PumpError::Read(e)) => ForwardEnd::ClientError(e),
                Err(PumpError::Write(e)) => ForwardEnd::ServerError(e),
            },
            r = down => match r {
                Ok(()) => ForwardEnd::ServerClosed,
                Err(PumpError::Read(e)) => ForwardEnd::ServerError(e),
                Err(PumpError::Write(e)) => ForwardEnd::ClientError(e),
            },
        }
    };

    // Close both sides: the survivor learns at once instead of waiting for a timeout.
    let close = async {
        let _ = to_server.get_mut().shutdown().await;
        let _ = to_client.get_mut().shutdown().await;
    };
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, close).await;
    end
}

/// Moves records from `source` to `sink`, flushing whenever no further record is ready, so
/// records that arrive together leave together.
async fn pump<R, W>(
    source: &mut FramedRead<R, RecordCodec>,
    sink: &mut FramedWrite<W, RecordCodec>,
    stats: &Stats,
    direction: Direction,
) -> Result<(), PumpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let records = source
        .map_err(PumpError::Read)
        .inspect_ok(|record: &Record| stats.record(direction, record.wire().len()));
    let sink = SinkExt::<Record>::sink_map_err(sink, PumpError::Write);
    records.forward(sink).await
}
