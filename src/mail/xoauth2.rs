//! The SASL XOAUTH2 message (Google's and Microsoft's OAuth2 login for IMAP
//! and SMTP): `base64("user=" user ^A "auth=Bearer " token ^A ^A)`, and
//! the JSON error a server sends as a challenge when it refuses the token.
//! Shared by the IMAP puller and the SMTP relay, so both build it alike and
//! neither can put the token anywhere but the socket.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::secret::Secret;

/// Why no XOAUTH2 message can be built (values never shown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Xoauth2Error {
    #[error("the user name holds a control character, which XOAUTH2 cannot carry")]
    User,
    #[error("the access token holds a character a bearer token may not (not shown)")]
    Token,
}

/// The base64 initial response, itself a secret (it carries the token).
pub fn initial_response(user: &str, token: &Secret) -> Result<Secret, Xoauth2Error> {
    if user.is_empty() || user.chars().any(char::is_control) {
        return Err(Xoauth2Error::User);
    }
    let t = token.expose();
    // RFC 6750 b64token: printable ASCII without spaces is all a token may be.
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Xoauth2Error::Token);
    }
    Ok(Secret::new(
        STANDARD.encode(format!("user={user}\x01auth=Bearer {t}\x01\x01")),
    ))
}

/// What a server's error challenge says, for an error message: its JSON
/// (`{"status":"401","schemes":"bearer","scope":"..."}`) cleaned to
/// printable text, or a note when it is not base64.
pub fn challenge_text(challenge: &str) -> String {
    match STANDARD.decode(challenge.trim()) {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes)
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect(),
        Ok(_) => String::new(),
        Err(_) => "(a challenge that is not base64)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_the_documented_one() {
        let m = initial_response(
            "someuser@example.com",
            &Secret::new("ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"),
        )
        .unwrap();
        // The example of Google's XOAUTH2 documentation.
        assert_eq!(
            m.expose(),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
        assert_eq!(format!("{m:?}"), "<redacted>");
    }

    #[test]
    fn nothing_can_break_out_of_the_message() {
        assert_eq!(
            initial_response("a\x01b", &Secret::new("t")).unwrap_err(),
            Xoauth2Error::User
        );
        for bad in ["", "a b", "a\r\nb", "a\x01b", "ä"] {
            assert_eq!(
                initial_response("u", &Secret::new(bad)).unwrap_err(),
                Xoauth2Error::Token,
                "{bad:?}"
            );
        }
        let err = initial_response("u", &Secret::new("tok secret")).unwrap_err();
        assert!(!err.to_string().contains("tok secret"));
    }

    #[test]
    fn error_challenges_are_decoded() {
        let json = r#"{"status":"401","schemes":"bearer","scope":"mail"}"#;
        assert_eq!(challenge_text(&STANDARD.encode(json)), json);
        assert_eq!(challenge_text("!!"), "(a challenge that is not base64)");
        assert_eq!(challenge_text(&STANDARD.encode("a\r\nb")), "ab");
    }
}
