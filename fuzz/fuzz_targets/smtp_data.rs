//! The DATA decoder alone: the result must not depend on how the input is
//! split across reads, and must respect the size cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate::mail::BareLf;
use mailgate::proto::smtp::data::{DataDecoder, DataEnd, Decoded, HEAD_MAX, encode};

fn decode_with(
    input: &[u8],
    mode: BareLf,
    max: usize,
    sizes: &[u8],
) -> (usize, Option<DataEnd>, Decoded) {
    let mut decoder = DataDecoder::new(max, mode);
    let mut pos = 0;
    let mut chunk = 0;
    let mut end = None;
    while pos < input.len() {
        let size = sizes
            .get(chunk % sizes.len().max(1))
            .map_or(input.len(), |s| usize::from(*s) + 1);
        chunk += 1;
        let piece = &input[pos..(pos + size).min(input.len())];
        let (used, e) = decoder.decode(piece);
        pos += used;
        if e.is_some() {
            end = e;
            break;
        }
        assert_eq!(used, piece.len(), "chunk not consumed whole before the end");
    }
    (pos, end, decoder.finish())
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let nsizes = usize::from(flags >> 4) + 1;
    let (sizes, input) = rest.split_at(nsizes.min(rest.len()));
    let mode = if flags & 1 == 0 {
        BareLf::Normalize
    } else {
        BareLf::Reject
    };
    let max = if flags & 2 == 0 { usize::MAX } else { 64 };

    let whole = decode_with(input, mode, max, &[]);
    let split = decode_with(input, mode, max, sizes);
    let bytewise = decode_with(input, mode, max, &[0]);
    assert_eq!(whole, split);
    assert_eq!(whole, bytewise);

    match &whole.2 {
        Decoded::Message(body) => {
            assert!(body.len() <= max);
            if whole.1 == Some(DataEnd::Complete) {
                // Stuffing the result again and decoding gives it back.
                let wire = encode(body);
                let again = decode_with(&wire, BareLf::Reject, usize::MAX, &[]);
                assert_eq!(again.0, wire.len());
                assert_eq!(again.1, Some(DataEnd::Complete));
                assert_eq!(again.2, Decoded::Message(body.clone()));
            }
        }
        Decoded::Oversize(info) => {
            assert!(info.size > max);
            assert!(info.head.len() <= HEAD_MAX);
        }
    }
});
