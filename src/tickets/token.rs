//! Reply tokens: the Message-ID of every message the gateway sends carries
//! an HMAC-signed reference to its ticket, so a customer's reply threads
//! even when the subject was edited and no other header survived.
//!
//! The key is this instance's own: a token minted by another gateway, or
//! forged, does not verify, and a reply carrying it falls back to the other
//! threading rules, never to the ticket it names.
//!
//! Format (the Message-ID without angle brackets):
//! `mg.<ticket id>.<message id>.<32 hex digits of HMAC-SHA256>@<domain>`.

use ring::hmac;
use subtle::ConstantTimeEq;

/// Bytes of the MAC kept in the token (128 bits).
const TAG_LEN: usize = 16;
const CONTEXT: &[u8] = b"mailgate reply token v1\0";

/// The secret that signs this instance's tokens. Debug never shows it.
#[derive(Clone)]
pub struct TokenKey(hmac::Key);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

/// What a verified token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRef {
    pub ticket_id: u64,
    pub message_id: u64,
}

impl TokenKey {
    /// At least 32 bytes of key material (shorter keys are refused by the
    /// loader, not here).
    pub fn new(secret: &[u8]) -> TokenKey {
        TokenKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    fn tag(&self, ticket_id: u64, message_id: u64) -> [u8; TAG_LEN] {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(CONTEXT);
        ctx.update(&ticket_id.to_be_bytes());
        ctx.update(&message_id.to_be_bytes());
        let full = ctx.sign();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full.as_ref()[..TAG_LEN]);
        tag
    }

    /// The Message-ID (without `<>`) for an outgoing message of a ticket.
    pub fn message_id(&self, ticket_id: u64, message_id: u64, domain: &str) -> String {
        let tag = self.tag(ticket_id, message_id);
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        format!("mg.{ticket_id}.{message_id}.{hex}@{domain}")
    }

    /// The ticket a Message-ID names, when it is a token this key signed.
    /// The domain is not checked: a relay may rewrite it, the MAC decides.
    pub fn verify(&self, id: &str) -> Option<TokenRef> {
        let local = id.split_once('@')?.0;
        let mut parts = local.split('.');
        if parts.next()? != "mg" {
            return None;
        }
        let ticket_id = digits(parts.next()?)?;
        let message_id = digits(parts.next()?)?;
        let hex = parts.next()?;
        if parts.next().is_some() || hex.len() != TAG_LEN * 2 {
            return None;
        }
        let mut given = [0u8; TAG_LEN];
        for (i, byte) in given.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        let expected = self.tag(ticket_id, message_id);
        bool::from(expected.ct_eq(&given)).then_some(TokenRef {
            ticket_id,
            message_id,
        })
    }
}

/// A decimal number without sign or leading zeros (one spelling per value).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::new(&[7u8; 32])
    }

    #[test]
    fn a_token_verifies_and_names_its_ticket() {
        let id = key().message_id(42, 1001, "support.example.test");
        assert!(id.starts_with("mg.42.1001."), "{id}");
        assert!(id.ends_with("@support.example.test"));
        assert_eq!(
            key().verify(&id),
            Some(TokenRef {
                ticket_id: 42,
                message_id: 1001
            })
        );
        // A relay that rewrites the domain does not break it.
        let local = id.split('@').next().unwrap();
        assert!(key().verify(&format!("{local}@other.test")).is_some());
    }

    #[test]
    fn forged_or_foreign_tokens_do_not_verify() {
        let id = key().message_id(42, 1001, "x.test");
        let other = TokenKey::new(&[8u8; 32]);
        assert_eq!(other.verify(&id), None, "another instance's token");
        // Pointing a valid MAC at another ticket.
        let forged = id.replacen("mg.42.", "mg.43.", 1);
        assert_eq!(key().verify(&forged), None);
        let tag = id
            .split('.')
            .nth(3)
            .unwrap()
            .split('@')
            .next()
            .unwrap()
            .to_string();
        let mut flipped = tag.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = id.replace(&tag, std::str::from_utf8(&flipped).unwrap());
        assert_eq!(key().verify(&flipped), None);
        for bad in [
            "",
            "@",
            "mg@x",
            "mg.1.2@x",
            "mg.1.2.zz@x",
            "mg.01.2.00000000000000000000000000000000@x",
            "mg.-1.2.00000000000000000000000000000000@x",
            "mg.1.2.00000000000000000000000000000000.extra@x",
            "xx.1.2.00000000000000000000000000000000@x",
            "mg.99999999999999999999999.2.00000000000000000000000000000000@x",
            "mg.1.2.é0000000000000000000000000000000@x",
        ] {
            assert_eq!(key().verify(bad), None, "{bad:?}");
        }
    }

    /// The fuzz target's property on seeded random input: nothing panics,
    /// and only ids this key made verify.
    #[test]
    fn random_ids_never_verify_and_never_panic() {
        let mut rng = crate::proto::testing::Rng::new(0x5eed_70c3);
        let real = key().message_id(7, 9, "x.test");
        let tokens: [&[u8]; 9] = [
            b"mg",
            b".",
            b"@",
            b"7",
            b"9",
            b"0",
            b"ff",
            real.as_bytes(),
            "\u{e9}".as_bytes(),
        ];
        let mut verified = 0;
        for _ in 0..20_000 {
            let input = rng.soup(&tokens, 12);
            if let Ok(text) = std::str::from_utf8(&input)
                && let Some(t) = key().verify(text)
            {
                verified += 1;
                let again = key().message_id(t.ticket_id, t.message_id, "x");
                assert_eq!(again.split('@').next(), text.split('@').next(), "{text:?}");
            }
        }
        assert!(
            verified > 0,
            "the soup should contain the real token now and then"
        );
    }

    #[test]
    fn the_key_is_never_printed() {
        assert_eq!(format!("{:?}", key()), "TokenKey(<redacted>)");
    }
}
