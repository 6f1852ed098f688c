//! Reading fuzz input bytes: a tiny generator for chunk sizes, a forgiving big-endian reader,
//! and the `record_stream` target's input format.

/// A tiny deterministic generator (xorshift32) for chunk sizes.
#[derive(Debug, Clone)]
pub struct Rng(u32);

impl Rng {
    pub fn new(seed: u32) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// A value in `1..=n`.
    pub fn between_1_and(&mut self, n: usize) -> usize {
        1 + (self.next_u32() as usize) % n.max(1)
    }
}

/// Reads big-endian fields from the front of a byte slice; missing bytes read as zero, so
/// every input is valid.
#[derive(Debug)]
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Input of the `record_stream` target: `[max_record_size - 1: u16][chunk limit - 1: u8]
/// [chunk seed: u8] stream...`.
#[derive(Debug)]
pub struct RecordStreamInput<'a> {
    pub max_record_size: usize,
    pub max_chunk: usize,
    pub seed: u32,
    pub stream: &'a [u8],
}

impl<'a> RecordStreamInput<'a> {
    pub fn parse(data: &'a [u8]) -> Self {
        let mut r = Reader(data);
        let max_record_size = 1 + usize::from(r.u16());
        let max_chunk = 1 + usize::from(r.u8());
        let seed = u32::from(r.u8()).wrapping_mul(0x9e37_79b9) | 1;
        RecordStreamInput {
            max_record_size,
            max_chunk,
            seed,
            stream: r.0,
        }
    }

    pub fn encode(max_record_size: u16, max_chunk: u8, seed: u8, stream: &[u8]) -> Vec<u8> {
        let mut out = max_record_size.saturating_sub(1).to_be_bytes().to_vec();
        out.push(max_chunk.saturating_sub(1));
        out.push(seed);
        out.extend_from_slice(stream);
        out
    }
}
