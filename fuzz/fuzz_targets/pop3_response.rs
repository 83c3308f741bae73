//! The POP3 response parser alone: arbitrary server bytes in arbitrary
//! pieces. Must never panic; the result must not depend on how the input
//! is split; the body must respect its cap; the helpers that read bodies
//! must cope with whatever the parser accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate::proto::pop3::{
    Expect, Feed, Overflow, ProtoError, Response, ResponseParser, parse_capa, parse_listing,
    parse_stat,
};

/// Feeds `input` in pieces whose sizes cycle through `sizes` (empty: whole).
/// Returns the response and the bytes it used, or the error.
fn parse_with(
    expect: Expect,
    input: &[u8],
    sizes: &[u8],
) -> Result<Option<(Response, usize)>, ProtoError> {
    let mut parser = ResponseParser::new(expect);
    let mut pos = 0;
    let mut chunk = 0;
    while pos < input.len() {
        let size = sizes
            .get(chunk % sizes.len().max(1))
            .map_or(input.len(), |s| usize::from(*s) + 1);
        chunk += 1;
        let piece = &input[pos..(pos + size).min(input.len())];
        match parser.feed(piece)? {
            Feed::NeedMore => pos += piece.len(),
            Feed::Done { response, used } => {
                assert!(used <= piece.len());
                return Ok(Some((response, pos + used)));
            }
        }
        assert!(parser.body_capacity() <= max_of(expect));
    }
    Ok(None)
}

fn max_of(expect: Expect) -> usize {
    match expect {
        Expect::Single => 0,
        Expect::Multi { max, .. } => max,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let nsizes = usize::from(flags >> 4) + 1;
    let (sizes, input) = rest.split_at(nsizes.min(rest.len()));
    let overflow = if flags & 2 == 0 {
        Overflow::Fail
    } else {
        Overflow::Truncate
    };
    let max = if flags & 4 == 0 { 1 << 20 } else { 64 };
    let expect = if flags & 1 == 0 {
        Expect::Multi { max, overflow }
    } else {
        Expect::Single
    };

    let whole = parse_with(expect, input, &[]);
    let split = parse_with(expect, input, sizes);
    let bytewise = parse_with(expect, input, &[0]);
    assert_eq!(whole, split);
    assert_eq!(whole, bytewise);

    if let Ok(Some((response, used))) = &whole {
        assert!(*used <= input.len());
        let _ = parse_stat(&response.text);
        assert!(!response.text.chars().any(char::is_control));
        match &response.body {
            Some(body) => {
                assert!(response.ok && matches!(expect, Expect::Multi { .. }));
                assert!(body.len() <= max);
                if response.truncated {
                    assert_eq!(overflow, Overflow::Truncate);
                }
                let _ = parse_listing(body);
                let _ = parse_capa(body);
            }
            None => assert!(!response.ok || expect == Expect::Single),
        }
    }
});
