//! Helpers for the protocol cores' unit tests: a tiny deterministic
//! pseudo-random generator and the "token soup" input it drives.
//!
//! The SMTP session and the POP3 parser both throw random, protocol-flavoured
//! bytes at themselves in random chunks (a cheap, always-on cousin of the
//! fuzz targets). One seeded xorshift keeps those runs reproducible without a
//! `rand` dependency, and lives here once instead of in each test module.

/// Marsaglia's xorshift64: fast, deterministic, good enough to pick tokens
/// and chunk sizes. Never seed it with 0 (it would stay 0).
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        assert_ne!(seed, 0, "xorshift cannot start from 0");
        Rng(seed)
    }

    /// The next value of the sequence.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A size in `1..=max`, e.g. for a read chunk.
    pub(crate) fn size(&mut self, max: usize) -> usize {
        (self.next_u64() % max as u64) as usize + 1
    }

    /// Up to `max_items - 1` items, each either a random byte (one in three)
    /// or one of `tokens`, concatenated.
    pub(crate) fn soup(&mut self, tokens: &[&[u8]], max_items: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let items = self.next_u64() % max_items;
        for _ in 0..items {
            let r = self.next_u64();
            if r.is_multiple_of(3) {
                out.push((r >> 8) as u8);
            } else {
                out.extend_from_slice(tokens[(r >> 8) as usize % tokens.len()]);
            }
        }
        out
    }

    /// `input` cut into consecutive pieces of `1..=max` bytes.
    pub(crate) fn chunks<'a>(&mut self, input: &'a [u8], max: usize) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let n = self.size(max).min(rest.len());
            let (piece, tail) = rest.split_at(n);
            out.push(piece);
            rest = tail;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_is_the_xorshift64_one() {
        let mut r = Rng::new(1);
        assert_eq!(r.next_u64(), 1082269761);
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        assert_eq!(a.soup(&[b"x"], 50), b.soup(&[b"x"], 50));
    }

    #[test]
    fn chunks_cover_the_input_in_order() {
        let input: Vec<u8> = (0..=255).collect();
        let pieces = Rng::new(7).chunks(&input, 13);
        assert!(pieces.iter().all(|p| (1..=13).contains(&p.len())));
        assert_eq!(pieces.concat(), input);
    }
}
