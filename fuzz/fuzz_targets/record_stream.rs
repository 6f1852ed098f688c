//! Record marking: the codec fed an arbitrary byte stream in arbitrary chunks must give exactly
//! what the reference decoder gives for the whole stream (records and first error), never
//! panic, and its encoder must reproduce every record it decoded.
#![no_main]

use bytes::BytesMut;
use efs_proxy_fuzz::{RecordStreamInput, RefError, Rng, reference_records};
use efs_rpc::{Record, RecordCodec};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    let input = RecordStreamInput::parse(data);
    let max = input.max_record_size;
    let expected = reference_records(input.stream, max, true);

    let mut codec = RecordCodec::new(max);
    let mut rng = Rng::new(input.seed);
    let mut buf = BytesMut::new();
    let mut records: Vec<Record> = Vec::new();
    let mut error = None;
    let mut rest = input.stream;
    'feed: while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rng.between_1_and(input.max_chunk).min(rest.len()));
        rest = tail;
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(record)) => records.push(record),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break 'feed;
                }
            }
            // The decoder reserves at most one fragment (4 + max bytes) ahead: no allocation
            // follows from a record mark alone. BytesMut may double what is asked.
            let bound = 4 * (4 + max + input.max_chunk) + 16384;
            assert!(
                buf.capacity() <= bound,
                "read buffer grew to {}",
                buf.capacity()
            );
        }
    }
    if error.is_none() {
        loop {
            match codec.decode_eof(&mut buf) {
                Ok(Some(record)) => records.push(record),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
    }

    let got: Vec<&[u8]> = records.iter().map(Record::message).collect();
    let want: Vec<&[u8]> = expected.messages.iter().map(Vec::as_slice).collect();
    assert_eq!(got, want, "records differ from the reference decoder");
    let got_end = match &error {
        None => Ok(()),
        Some(e) => Err(RefError::of(e).expect("no I/O in memory")),
    };
    assert_eq!(
        got_end, expected.end,
        "end of stream differs from the reference"
    );
    if let Some(e) = &error {
        let _ = e.to_string();
    }

    let mut encoder = RecordCodec::new(max);
    for record in records {
        let len = record.message_len();
        assert!((1..=max).contains(&len));
        let mark = u32::from_be_bytes(record.wire()[..4].try_into().unwrap());
        assert_eq!(
            mark,
            0x8000_0000 | len as u32,
            "reassembled into one last fragment"
        );
        assert_eq!(record.xid().is_some(), len >= 4);
        let _ = format!("{record:?}");

        let mut framed = BytesMut::new();
        encoder.encode(record.message(), &mut framed).unwrap();
        assert_eq!(&framed[..], &record.wire()[..]);
        assert_eq!(Record::from_message(record.message()).unwrap(), record);
        let mut again = BytesMut::new();
        encoder.encode(record.clone(), &mut again).unwrap();
        assert_eq!(
            RecordCodec::new(max).decode(&mut again).unwrap(),
            Some(record)
        );
        assert!(again.is_empty());
    }
});
