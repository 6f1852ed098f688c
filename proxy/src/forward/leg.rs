//! One server connection of a group: its record reader and writer, the records that arrived
//! with the bind reply, and what is in flight on it (for routing to the least loaded leg).

use std::collections::VecDeque;
use std::task::{Context, Poll};

use bytes::BytesMut;
use efs_rpc::{Record, RecordCodec, RecordError};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio_util::codec::{Decoder, FramedRead};

use super::WRITE_QUEUE_LIMIT;
use super::writer::{Hold, RecordWriter};

/// One server connection of a group.
pub struct Leg<S> {
    pub(super) id: usize,
    /// Records that arrived with the bind reply, before forwarding started: handed on first.
    /// (`FramedRead` decodes its buffer only after a read, so bytes put there would wait for
    /// the server's next message: a callback right behind the bind reply would be stuck.)
    pub(super) early: VecDeque<Record>,
    /// A record-marking error in those early bytes, reported after the early records.
    pub(super) early_error: Option<RecordError>,
    pub(super) reader: FramedRead<ReadHalf<S>, RecordCodec>,
    pub(super) writer: RecordWriter<WriteHalf<S>>,
    /// Calls sent on this leg and not answered yet, and their bytes.
    pub(super) in_flight: usize,
    pub(super) in_flight_bytes: usize,
}

impl<S: AsyncRead + AsyncWrite> Leg<S> {
    /// Wraps a connected (and bound) server stream. `pending` holds bytes already read from
    /// it (after the bind reply).
    pub fn new(id: usize, stream: S, mut pending: BytesMut, max_record_size: usize) -> Self {
        let (read, write) = tokio::io::split(stream);
        let mut codec = RecordCodec::new(max_record_size);
        let mut early = VecDeque::new();
        let mut early_error = None;
        loop {
            match codec.decode(&mut pending) {
                Ok(Some(record)) => early.push_back(record),
                Ok(None) => break,
                Err(e) => {
                    early_error = Some(e);
                    pending.clear();
                    break;
                }
            }
        }
        // What is left is part of a record: the rest must come from the server anyway. The
        // codec keeps the fragments already assembled.
        let mut reader = FramedRead::new(read, codec);
        reader.read_buffer_mut().extend_from_slice(&pending);
        Leg {
            id,
            early,
            early_error,
            reader,
            writer: RecordWriter::new(write, WRITE_QUEUE_LIMIT, Hold::Copy),
            in_flight: 0,
            in_flight_bytes: 0,
        }
    }

    /// The number given at [`Leg::new`]: names the leg in logs and in the call table that
    /// routes a client's reply back to the leg that carried the server's callback.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The next record from the server: the early ones first, then the socket's.
    pub(super) fn poll_next_record(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Record, RecordError>>> {
        if let Some(record) = self.early.pop_front() {
            return Poll::Ready(Some(Ok(record)));
        }
        if let Some(e) = self.early_error.take() {
            return Poll::Ready(Some(Err(e)));
        }
        self.reader.poll_next_unpin(cx)
    }
}

pub(super) fn unbook<S>(leg: &mut Leg<S>, bytes: usize) {
    leg.in_flight = leg.in_flight.saturating_sub(1);
    leg.in_flight_bytes = leg.in_flight_bytes.saturating_sub(bytes);
}
