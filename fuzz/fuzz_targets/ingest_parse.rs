//! Arbitrary bytes through ingest's parse and classify: must never panic,
//! and whatever is accepted must have a sender address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate::ingest::{classify::classify, parse::parse};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(mail) => {
            assert!(mail.from.address.contains('@'));
            let _ = classify(&mail, Some(""), &|a| a == "support@example.test");
            let _ = classify(&mail, None, &|_| false);
        }
        Err(unusable) => assert!(!unusable.detail.is_empty()),
    }
});
