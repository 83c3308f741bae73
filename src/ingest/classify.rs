//! Is this message written by a person, or by a machine?
//!
//! Automatic mail (auto-replies, bounces, bulk, our own mail coming back)
//! must never open a ticket: answering it starts mail loops. It may still be
//! threaded onto an existing ticket, which the commit step decides.

use crate::mail::ParsedMail;
use crate::mail::RejectReason;

/// Why a message looks automatic, or None for mail from a person.
pub fn classify(
    mail: &ParsedMail,
    return_path: Option<&str>,
    own_addresses: &dyn Fn(&str) -> bool,
) -> Option<(RejectReason, String)> {
    let m = &mail.markers;
    if own_addresses(&mail.from.address.to_lowercase()) {
        return Some((
            RejectReason::Loop,
            format!(
                "From {} is one of this gateway's own mailbox addresses",
                mail.from.address
            ),
        ));
    }
    let return_path = return_path.or(m.return_path.as_deref());
    if return_path == Some("") {
        return Some((
            RejectReason::Bounce,
            "empty return path (MAIL FROM:<>)".into(),
        ));
    }
    if m.is_report {
        return Some((
            RejectReason::Bounce,
            "Content-Type multipart/report (delivery or read report)".into(),
        ));
    }
    let local = mail
        .from
        .address
        .rsplit_once('@')
        .map(|(l, _)| l.to_ascii_lowercase())
        .unwrap_or_default();
    if local == "mailer-daemon" || local == "postmaster" {
        return Some((RejectReason::Bounce, format!("From {}", mail.from.address)));
    }
    if let Some(v) = &m.auto_submitted {
        let value = v
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if value != "no" {
            return Some((RejectReason::AutoSubmitted, format!("Auto-Submitted: {v}")));
        }
    }
    if let Some(v) = &m.precedence {
        let value = v.trim().to_ascii_lowercase();
        if ["bulk", "junk", "list"].contains(&value.as_str()) {
            return Some((RejectReason::Bulk, format!("Precedence: {v}")));
        }
        if value == "auto_reply" {
            return Some((RejectReason::AutoReply, format!("Precedence: {v}")));
        }
    }
    for (name, value) in [
        ("X-Autoreply", &m.x_autoreply),
        ("X-Autorespond", &m.x_autorespond),
        ("X-Auto-Response-Suppress", &m.x_auto_response_suppress),
    ] {
        if let Some(v) = value {
            return Some((RejectReason::AutoReply, format!("{name}: {v}")));
        }
    }
    None
}

/// Every marker of automatic mail the message carries, for the decision
/// trace (classification stops at the first; this lists them all).
pub fn signals(mail: &ParsedMail, return_path: Option<&str>) -> Vec<String> {
    let m = &mail.markers;
    let mut out = Vec::new();
    if return_path.or(m.return_path.as_deref()) == Some("") {
        out.push("null sender".to_string());
    }
    if m.is_report {
        out.push("Content-Type: multipart/report".to_string());
    }
    let local = mail.from.address.rsplit_once('@').map(|(l, _)| l);
    if let Some(l) = local
        .filter(|l| l.eq_ignore_ascii_case("mailer-daemon") || l.eq_ignore_ascii_case("postmaster"))
    {
        out.push(format!("From: {l}@"));
    }
    for (name, value) in [
        ("Auto-Submitted", &m.auto_submitted),
        ("Precedence", &m.precedence),
        ("X-Autoreply", &m.x_autoreply),
        ("X-Autorespond", &m.x_autorespond),
        ("X-Auto-Response-Suppress", &m.x_auto_response_suppress),
    ] {
        if let Some(v) = value {
            out.push(format!(
                "{name}: {}",
                v.chars().take(80).collect::<String>()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::parse;

    fn verdict(raw: &str, return_path: Option<&str>) -> Option<RejectReason> {
        let mail = parse(raw.as_bytes()).unwrap();
        classify(&mail, return_path, &|a| a == "support@example.test").map(|(r, _)| r)
    }

    #[test]
    fn signals_list_every_marker_seen() {
        let mail = parse(
            b"From: a@x.test\r\nAuto-Submitted: auto-replied\r\nPrecedence: bulk\r\n\r\nhi\r\n",
        )
        .unwrap();
        assert_eq!(
            signals(&mail, Some("")),
            vec![
                "null sender".to_string(),
                "Auto-Submitted: auto-replied".to_string(),
                "Precedence: bulk".to_string(),
            ]
        );
        let person = parse(b"From: a@x.test\r\n\r\nhi\r\n").unwrap();
        assert!(signals(&person, Some("a@x.test")).is_empty());
    }

    #[test]
    fn people_pass() {
        assert_eq!(
            verdict("From: a@x.test\r\n\r\nhi\r\n", Some("a@x.test")),
            None
        );
        assert_eq!(
            verdict(
                "From: a@x.test\r\nAuto-Submitted: no\r\n\r\nhi\r\n",
                Some("a@x.test")
            ),
            None
        );
        assert_eq!(
            verdict(
                "From: a@x.test\r\nPrecedence: first-class\r\n\r\nhi\r\n",
                None
            ),
            None
        );
    }

    #[test]
    fn machines_are_named() {
        let cases = [
            (
                "From: a@x.test\r\nAuto-Submitted: auto-replied\r\n\r\nhi\r\n",
                RejectReason::AutoSubmitted,
            ),
            (
                "From: a@x.test\r\nPrecedence: bulk\r\n\r\nhi\r\n",
                RejectReason::Bulk,
            ),
            (
                "From: a@x.test\r\nPrecedence: Junk\r\n\r\nhi\r\n",
                RejectReason::Bulk,
            ),
            (
                "From: a@x.test\r\nX-Autoreply: yes\r\n\r\nhi\r\n",
                RejectReason::AutoReply,
            ),
            (
                "From: a@x.test\r\nX-Auto-Response-Suppress: All\r\n\r\nhi\r\n",
                RejectReason::AutoReply,
            ),
            (
                "From: MAILER-DAEMON@x.test\r\n\r\nhi\r\n",
                RejectReason::Bounce,
            ),
            (
                "From: a@x.test\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
                RejectReason::Bounce,
            ),
            (
                "From: Support <SUPPORT@example.test>\r\n\r\nhi\r\n",
                RejectReason::Loop,
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(verdict(raw, Some("a@x.test")), Some(want), "{raw}");
        }
        assert_eq!(
            verdict("From: a@x.test\r\n\r\nhi\r\n", Some("")),
            Some(RejectReason::Bounce)
        ); // Pulled mail: the Return-Path header stands in for the envelope.
        assert_eq!(
            verdict("Return-Path: <>\r\nFrom: a@x.test\r\n\r\nhi\r\n", None),
            Some(RejectReason::Bounce)
        );
        assert_eq!(
            verdict(
                "Return-Path: <a@x.test>\r\nFrom: a@x.test\r\n\r\nhi\r\n",
                None
            ),
            None
        );
    }
}
