//! The Dovecot harness itself works: it starts, takes mail, reports flags.
mod support;

use support::dovecot::{Dovecot, Separator};

#[test]
fn dovecot_starts_and_takes_mail() {
    let d = Dovecot::start();
    d.create_folder("INBOX.support");
    d.save("INBOX", b"From: a@b.test\r\nSubject: one\r\n\r\nbody\r\n");
    d.save(
        "INBOX.support",
        b"From: a@b.test\r\nSubject: two\r\n\r\nbody\r\n",
    );
    assert_eq!(d.count("INBOX"), 1);
    assert_eq!(d.count("INBOX.support"), 1);
    d.add_flags("INBOX", 1, "\\Seen");
    assert_eq!(d.flags("INBOX"), vec![(1, "\\Seen".to_string())]);
    let slash = Dovecot::start_with(Separator::Slash);
    slash.create_folder("INBOX/support");
    slash.save("INBOX/support", b"From: a@b.test\r\n\r\nx\r\n");
    assert_eq!(slash.count("INBOX/support"), 1);
}
