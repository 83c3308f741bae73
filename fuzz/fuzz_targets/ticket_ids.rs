//! What the ticket rules read from a received message's own bytes: reply
//! tokens in In-Reply-To / References (any string), and the content
//! fingerprint of mail that could not be parsed (any bytes). Neither may
//! panic; a token verifies only when this key made it, and the fingerprint
//! ignores trace header fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate::tickets::dedup::raw_fingerprint;
use mailgate::tickets::token::TokenKey;

fuzz_target!(|data: &[u8]| {
    let key = TokenKey::new(&[3u8; 32]);
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(t) = key.verify(text)
    {
        // Only our own spelling of an id we made verifies.
        let again = key.message_id(t.ticket_id, t.message_id, "x");
        assert_eq!(
            again.split('@').next(),
            text.split('@').next(),
            "a token verified that this key did not make"
        );
    }
    let fp = raw_fingerprint(data);
    assert_eq!(fp.len(), 32);
    let mut traced = b"Received: from fuzz by fuzz\r\n".to_vec();
    traced.extend_from_slice(data);
    if !data.starts_with(b" ") && !data.starts_with(b"\t") && !data.starts_with(b"\r\n") && !data.starts_with(b"\n") && !data.is_empty() {
        assert_eq!(raw_fingerprint(&traced), fp, "a Received line changed the fingerprint");
    }
});
