//! The ticket rules' tests, written once against [`Harness`] and run on
//! every backend: `ticket_rules_suite!(make)` expands to one `#[test]` per
//! rule for the backend `make()` builds (the in-memory maps here, redb in
//! `store`).

use std::sync::Arc;

use bytes::Bytes;

use super::model::ReplayResult;
use super::model::{
    BodyStore, Change, DeliveryState, Direction, Earlier, OutboxEntry, Outcome, StoredMessage,
    SuppressReason, Ticket, TicketEvent, TicketStatus,
};
use super::notify::{MailboxNotify, NotifySettings};
use super::outgoing::{ComposeError, Composer, Mailbox, Outgoing, tagged_subject};
use super::render::{RenderError, Rendered, Renderer, TemplateData};
use super::request::{
    Attempt, CommitRequest, DeliveryOutcome, DeliveryUpdate, Item, MailboxRef, OpOutcome,
    Operation, ReplyOutcome, ReplyRequest, Sender, TicketSettings, TicketUpdate, UpdateOutcome,
};
use super::request::{ReplayOutcome, ReplayRequest};
use super::trace::{
    Automatic, Classification, DecisionTrace, DedupOutcome, Routing, RuleScope, RuleTrace,
    ThreadBy, Threading,
};
use crate::config::notify::{Notification, NotifyConfig};
use crate::mail::{
    AttachmentMeta, EnvelopeInfo, Origin, ParsedMail, Person, RejectReason, TagFormat,
};

/// A backend under test: each `apply_ops` is one transaction.
pub trait Harness {
    /// One transaction with these settings.
    fn apply_with(&mut self, settings: &TicketSettings, ops: &[Operation]) -> Vec<OpOutcome>;
    fn apply_ops(&mut self, ops: &[Operation]) -> Vec<OpOutcome> {
        self.apply_with(&settings(), ops)
    }
    fn outbox(&self, id: u64) -> Option<OutboxEntry>;
    fn pending_outbox(&self) -> Vec<u64>;
    fn send_log(&self, mailbox: &str) -> Vec<(i64, u64, u64)>;
    fn raw(&self, id: u64) -> Option<Vec<u8>>;
    fn events(&self, ticket: u64) -> Vec<TicketEvent>;
    fn ticket(&self, id: u64) -> Option<Ticket>;
    fn ticket_message_ids(&self, ticket: u64) -> Vec<u64>;
    fn message(&self, id: u64) -> Option<StoredMessage>;
    fn rejection_raw(&self, id: u64) -> Option<Vec<u8>>;
    fn rejection(&self, id: u64) -> Option<super::model::Rejection>;
    fn attachment(&self, message: u64, index: u32) -> Option<Vec<u8>>;

    fn commit_batch(&mut self, requests: &[CommitRequest]) -> Vec<Vec<Outcome>> {
        let ops: Vec<Operation> = requests.iter().cloned().map(Operation::Ingest).collect();
        self.apply_ops(&ops)
            .into_iter()
            .map(|o| match o {
                OpOutcome::Ingested(o) => o,
                other => panic!("{other:?}"),
            })
            .collect()
    }
    fn op(&mut self, op: Operation) -> OpOutcome {
        self.apply_ops(&[op]).remove(0)
    }
    fn commit(&mut self, request: CommitRequest) -> Vec<Outcome> {
        self.commit_batch(&[request]).remove(0)
    }
    fn one(&mut self, request: CommitRequest) -> Outcome {
        self.commit(request).remove(0)
    }
}

pub fn settings() -> TicketSettings {
    TicketSettings {
        tag: TagFormat::parse("[MG#{number}]").unwrap(),
        first_number: 1000,
        token: Some(token_key()),
        senders: ["support", "sales"]
            .into_iter()
            .map(|m| {
                let address = format!("{m}@gw.test");
                let sender = Sender {
                    from: Mailbox {
                        name: Some(format!("{m} team")),
                        address: address.clone(),
                    },
                    reply_to: address,
                };
                (m.to_string(), sender)
            })
            .collect(),
        composer: Some(Arc::new(TestComposer)),
        categories: vec!["billing".into(), "hardware".into()],
        notify: None,
    }
}

/// Bytes that say who, which id and what, enough for the rules' tests (the
/// real header policy is tested in outbound::compose).
struct TestComposer;

impl Composer for TestComposer {
    fn compose(&self, m: &Outgoing) -> Result<Vec<u8>, ComposeError> {
        if m.to.iter().any(|t| !t.address.contains('@')) {
            return Err(ComposeError::Address { field: "to" });
        }
        let auto = match m.kind.auto_submitted() {
            Some(v) => format!("Auto-Submitted: {v}\r\n"),
            None => String::new(),
        };
        let original = match &m.original {
            Some(o) => format!(
                "X-Test-Original: {} {} bytes, {} attachments\r\n",
                o.mode.as_str(),
                o.raw.len(),
                o.attachments.len()
            ),
            None => String::new(),
        };
        Ok(format!(
            "{auto}{original}From: {}\r\nTo: {}\r\nMessage-ID: <{}>\r\nIn-Reply-To: <{}>\r\nSubject: {}\r\n\r\n{}\r\n",
            m.from.address,
            m.to[0].address,
            m.message_id,
            m.in_reply_to.as_deref().unwrap_or(""),
            tagged_subject(&m.subject, &m.tag),
            m.text
        )
        .into_bytes())
    }
}

pub fn token_key() -> super::token::TokenKey {
    super::token::TokenKey::new(&[9u8; 32])
}

/// A parsed message, built by hand (the parser is a layer above).
#[derive(Clone)]
pub struct Mail {
    pub from: &'static str,
    pub id: Option<&'static str>,
    pub subject: &'static str,
    pub in_reply_to: Vec<&'static str>,
    pub references: Vec<&'static str>,
    pub text: &'static str,
    /// A delivery report returning these Message-IDs.
    pub reported: Vec<String>,
}

pub fn mail(from: &'static str, id: Option<&'static str>, subject: &'static str) -> Mail {
    Mail {
        from,
        id,
        subject,
        in_reply_to: vec![],
        references: vec![],
        text: "body",
        reported: vec![],
    }
}

impl Mail {
    pub fn replying(mut self, in_reply_to: &'static str) -> Mail {
        self.in_reply_to = vec![in_reply_to];
        self
    }
    pub fn referencing(mut self, refs: &[&'static str]) -> Mail {
        self.references = refs.to_vec();
        self
    }
    pub fn reporting(mut self, id: &str) -> Mail {
        self.reported = vec![id.to_string()];
        self
    }
    pub fn text(mut self, text: &'static str) -> Mail {
        self.text = text;
        self
    }
    fn parsed(&self) -> ParsedMail {
        ParsedMail {
            message_id: self.id.map(str::to_string),
            in_reply_to: self.in_reply_to.iter().map(|s| s.to_string()).collect(),
            references: self.references.iter().map(|s| s.to_string()).collect(),
            from: Person {
                address: self.from.into(),
                name: None,
            },
            subject: self.subject.into(),
            text: self.text.into(),
            markers: crate::mail::Markers {
                is_report: !self.reported.is_empty(),
                reported_ids: self.reported.clone(),
                reported_status: (!self.reported.is_empty())
                    .then(|| "smtp; 550 5.1.1 user unknown".to_string()),
                ..Default::default()
            },
            ..ParsedMail::default()
        }
    }
    fn raw(&self) -> Bytes {
        let mut raw = format!("From: {}\r\nSubject: {}\r\n", self.from, self.subject);
        if let Some(id) = self.id {
            raw.push_str(&format!("Message-ID: <{id}>\r\n"));
        }
        raw.push_str(&format!("\r\n{}\r\n", self.text));
        Bytes::from(raw)
    }
}

fn origin() -> Origin {
    Origin {
        source: "test".into(),
        envelope: EnvelopeInfo::default(),
        received_at: "2026-01-01T00:00:00Z".into(),
    }
}

fn mailbox(name: &str) -> MailboxRef {
    MailboxRef {
        name: name.into(),
        queue: name.to_uppercase(),
        ..MailboxRef::default()
    }
}

pub fn request_for(m: &Mail, mailboxes: &[&str], automatic: bool) -> CommitRequest {
    request_with(m, m.parsed(), mailboxes, automatic)
}

fn request_with(
    m: &Mail,
    parsed: ParsedMail,
    mailboxes: &[&str],
    automatic: bool,
) -> CommitRequest {
    let raw = m.raw();
    let parsed = Arc::new(parsed);
    CommitRequest {
        origin: origin(),
        size: raw.len() as u64,
        raw,
        upstream_key: None,
        digests: Default::default(),
        journal: Default::default(),
        items: mailboxes
            .iter()
            .map(|name| Item::Message {
                mailbox: mailbox(name),
                mail: parsed.clone(),
                automatic: automatic.then(|| (RejectReason::AutoSubmitted, "test".into())),
                rules: None,
                internal: false,
                counterpart: None,
                trace: Default::default(),
            })
            .collect(),
    }
}

pub fn request(m: &Mail) -> CommitRequest {
    request_for(m, &["support"], false)
}

fn reject_request(raw: &'static [u8], message_id: Option<&str>, keep_raw: bool) -> CommitRequest {
    CommitRequest {
        origin: origin(),
        raw: if keep_raw {
            Bytes::from_static(raw)
        } else {
            Bytes::new()
        },
        size: raw.len() as u64,
        upstream_key: None,
        digests: Default::default(),
        journal: Default::default(),
        items: vec![Item::Reject {
            mailbox: Some("support".into()),
            reason: if keep_raw {
                RejectReason::NoSender
            } else {
                RejectReason::Oversize
            },
            detail: "test".into(),
            message_id: message_id.map(str::to_string),
            from: None,
            subject: Some("s".into()),
            keep_raw,
            trace: Default::default(),
        }],
    }
}

/// (message id, ticket number, new ticket) of a stored outcome.
pub fn stored(o: &Outcome) -> (u64, u64, bool) {
    match o {
        Outcome::Stored {
            message_id,
            ticket_number,
            new_ticket,
            ..
        } => (*message_id, *ticket_number, *new_ticket),
        other => panic!("expected a stored message, got {other:?}"),
    }
}

pub fn threads_by_references_in_reply_to_and_tag(h: &mut impl Harness) {
    let first = h.one(request(&mail("a@x.test", Some("1@x"), "Help")));
    assert_eq!(stored(&first), (1, 1000, true));
    let by_refs = h.one(request(
        &mail("a@x.test", Some("2@x"), "Re: Help").referencing(&["unknown@x", "1@x"]),
    ));
    assert_eq!(stored(&by_refs), (2, 1000, false));
    let by_irt = h.one(request(&mail("a@x.test", Some("3@x"), "x").replying("2@x")));
    assert_eq!(stored(&by_irt).1, 1000);
    let by_tag = h.one(request(&mail(
        "b@x.test",
        Some("4@x"),
        "Re: [MG#1000] Help",
    )));
    assert_eq!(stored(&by_tag).1, 1000);
    let unknown_tag = h.one(request(&mail(
        "b@x.test",
        Some("5@x"),
        "Re: [MG#4242] Help",
    )));
    assert_eq!(stored(&unknown_tag), (5, 1001, true));
    let ticket = h.ticket(1).unwrap();
    assert_eq!(ticket.message_count, 4);
    assert_eq!(ticket.tag, "[MG#1000]");
    assert_eq!(ticket.requester.address, "a@x.test");
    assert_eq!(h.ticket_message_ids(1), vec![1, 2, 3, 4]);
}

pub fn threading_is_scoped_to_the_mailbox(h: &mut impl Harness) {
    stored(&h.one(request(&mail("a@x.test", Some("s1@x"), "Help"))));
    let other = h.one(request_for(
        &mail("a@x.test", Some("s2@x"), "Re: [MG#1000] Help").replying("s1@x"),
        &["sales"],
        false,
    ));
    assert_eq!(stored(&other), (2, 1001, true));
}

pub fn duplicates_by_message_id_and_by_content(h: &mut impl Harness) {
    let m = mail("a@x.test", Some("d@x"), "s");
    stored(&h.one(request(&m)));
    assert_eq!(h.one(request(&m)), Outcome::Duplicate(Earlier::Message(1)));
    let no_id = mail("a@x.test", None, "s").text("no id");
    let (id, _, _) = stored(&h.one(request(&no_id)));
    assert_eq!(
        h.one(request(&no_id)),
        Outcome::Duplicate(Earlier::Message(id))
    );
    // Another mailbox is another scope.
    let other = h.commit(request_for(&m, &["sales"], false));
    assert!(matches!(
        other[0],
        Outcome::Stored {
            new_ticket: true,
            ..
        }
    ));
}

pub fn duplicates_inside_one_batch_are_caught(h: &mut impl Harness) {
    let m = mail("a@x.test", Some("same@x"), "s");
    let outcomes = h.commit_batch(&[request(&m), request(&m)]);
    assert!(matches!(outcomes[0][0], Outcome::Stored { .. }));
    assert_eq!(outcomes[1][0], Outcome::Duplicate(Earlier::Message(1)));
}

pub fn a_planted_message_id_does_not_suppress_the_real_mail(h: &mut impl Harness) {
    let planted = mail("stranger@evil.test", Some("real@customer.test"), "hi").text("spam");
    let genuine = mail("ann@customer.test", Some("real@customer.test"), "Invoice").text("real");
    let first = h.one(request(&planted));
    assert!(matches!(
        first,
        Outcome::Stored {
            id_collision: false,
            ..
        }
    ));
    let real = h.one(request(&genuine));
    match real {
        Outcome::Stored {
            message_id,
            id_collision,
            new_ticket,
            ..
        } => {
            assert!(
                id_collision,
                "a same-id, other-content message is a collision"
            );
            assert!(new_ticket);
            let m = h.message(message_id).unwrap();
            assert_eq!(m.from.address, "ann@customer.test");
            let raw = h.raw(message_id).unwrap();
            assert!(raw.ends_with(b"\r\n\r\nreal\r\n"), "{raw:?}");
        }
        other => panic!("the genuine message was not stored: {other:?}"),
    }
    // Copies of either are still duplicates, each of its own record.
    assert_eq!(
        h.one(request(&planted)),
        Outcome::Duplicate(Earlier::Message(1))
    );
    assert_eq!(
        h.one(request(&genuine)),
        Outcome::Duplicate(Earlier::Message(2))
    );
    // Replies keep threading on the first holder of the id.
    let reply = h.one(request(
        &mail("x@y.test", Some("r@y"), "Re").replying("real@customer.test"),
    ));
    assert_eq!(stored(&reply).1, 1000);
}

pub fn automatic_mail_threads_or_is_rejected(h: &mut impl Harness) {
    stored(&h.one(request(&mail("a@x.test", Some("t@x"), "s"))));
    let threaded = h.one(request_for(
        &mail("a@x.test", Some("ar1@x"), "Out of office").replying("t@x"),
        &["support"],
        true,
    ));
    assert_eq!(stored(&threaded).1, 1000);
    assert!(h.message(2).unwrap().auto_submitted);
    let alone = h.one(request_for(
        &mail("a@x.test", Some("ar2@x"), "Out of office"),
        &["support"],
        true,
    ));
    assert_eq!(
        alone,
        Outcome::Rejected {
            rejection_id: 1,
            reason: RejectReason::AutoSubmitted
        }
    );
    assert!(h.rejection_raw(1).is_some());
}

pub fn rejections_dedup_and_oversize_without_id_never_does(h: &mut impl Harness) {
    let raw: &'static [u8] = b"Subject: s\r\n\r\nno from\r\n";
    let r = h.one(reject_request(raw, None, true));
    assert!(matches!(
        r,
        Outcome::Rejected {
            rejection_id: 1,
            ..
        }
    ));
    assert_eq!(h.rejection_raw(1).as_deref(), Some(raw));
    assert_eq!(
        h.one(reject_request(raw, None, true)),
        Outcome::Duplicate(Earlier::Rejection(1))
    );
    // Oversize: raw not kept; without an id every notice is its own record.
    for expected in [2, 3] {
        match h.one(reject_request(raw, None, false)) {
            Outcome::Rejected { rejection_id, .. } => assert_eq!(rejection_id, expected),
            other => panic!("{other:?}"),
        }
        assert_eq!(h.rejection_raw(expected), None);
    }
    // With an id the same oversize message is recognised.
    let first = h.one(reject_request(raw, Some("big@x"), false));
    assert_eq!(
        h.one(reject_request(raw, Some("big@x"), false)),
        Outcome::Duplicate(first.earlier())
    );
}

pub fn upstream_identity_makes_a_refetch_a_duplicate(h: &mut impl Harness) {
    let m = mail("a@x.test", Some("u@x"), "s");
    let mut r = request(&m);
    r.upstream_key = Some("imap:7:42".into());
    let first = h.one(r.clone());
    assert!(matches!(first, Outcome::Stored { .. }));
    // Even with other content: the identity decides, nothing is re-imported.
    let mut again = request(&mail("a@x.test", Some("other@x"), "t"));
    again.upstream_key = Some("imap:7:42".into());
    assert_eq!(h.one(again), Outcome::Duplicate(first.earlier()));
    assert_eq!(h.ticket(2), None);
}

pub fn one_message_for_two_mailboxes_makes_two_tickets(h: &mut impl Harness) {
    let outcomes = h.commit(request_for(
        &mail("a@x.test", Some("two@x"), "s"),
        &["support", "sales"],
        false,
    ));
    assert_eq!(stored(&outcomes[0]), (1, 1000, true));
    assert_eq!(stored(&outcomes[1]), (2, 1001, true));
    assert_eq!(h.ticket(2).unwrap().mailbox, "sales");
}

pub fn attachments_are_kept_with_their_message(h: &mut impl Harness) {
    let m = mail("a@x.test", Some("att@x"), "s");
    let mut parsed = m.parsed();
    parsed.attachments = vec![AttachmentMeta {
        index: 0,
        name: Some("a.bin".into()),
        content_type: "application/octet-stream".into(),
        size: 3,
    }];
    let o = h.one(request_with(&m, parsed, &["support"], false));
    let (id, _, _) = stored(&o);
    let stored = h.message(id).unwrap();
    assert_eq!(stored.attachments.len(), 1);
    assert_eq!(stored.attachments[0].name.as_deref(), Some("a.bin"));
    // The body and the attachments' bytes are in the raw message only: the
    // record points there rather than holding a second copy.
    assert_eq!(stored.body, BodyStore::Raw);
    assert_eq!(stored.text, "");
    assert_eq!(h.attachment(id, 0), None);
    assert_eq!(h.raw(id).as_deref(), Some(m.raw().as_ref()));
}

pub fn a_reply_token_threads_and_a_forged_one_does_not(h: &mut impl Harness) {
    stored(&h.one(request(&mail("a@x.test", Some("tok1@x"), "Help"))));
    // Our token for ticket 1, never stored as a Message-ID (the subject was
    // edited, nothing else names the ticket).
    let ours = token_key().message_id(1, 77, "gw.test");
    let ours: &'static str = Box::leak(ours.into_boxed_str());
    let reply = h.one(request(
        &mail("a@x.test", Some("tok2@x"), "edited").replying(ours),
    ));
    assert_eq!(stored(&reply), (2, 1000, false));
    // Another instance's key, or a changed ticket id: a new ticket.
    let foreign = super::token::TokenKey::new(&[1u8; 32]).message_id(1, 77, "gw.test");
    let foreign: &'static str = Box::leak(foreign.into_boxed_str());
    let other = h.one(request(
        &mail("a@x.test", Some("tok3@x"), "edited").replying(foreign),
    ));
    assert!(stored(&other).2, "a foreign token must not thread");
    // A valid token for a ticket of another mailbox does not cross mailboxes.
    let sales = h.one(request_for(
        &mail("b@x.test", Some("tok4@x"), "Sales"),
        &["sales"],
        false,
    ));
    let (_, _, _) = stored(&sales);
    let sales_ticket = match sales {
        Outcome::Stored { ticket_id, .. } => ticket_id,
        _ => unreachable!(),
    };
    let cross = token_key().message_id(sales_ticket, 1, "gw.test");
    let cross: &'static str = Box::leak(cross.into_boxed_str());
    let crossed = h.one(request(
        &mail("b@x.test", Some("tok5@x"), "x").replying(cross),
    ));
    assert!(
        stored(&crossed).2,
        "a token of another mailbox's ticket opens a new ticket here"
    );
}

fn reply_request(ticket_id: u64, text: &str, internal: bool) -> ReplyRequest {
    ReplyRequest {
        ticket_id,
        author: Some("agent@gw.test".into()),
        text: text.into(),
        html: None,
        cc: vec![],
        attachments: vec![],
        internal,
        at: "2026-01-02T00:00:00Z".into(),
        at_ms: 1_767_312_000_000,
    }
}

fn replied(o: OpOutcome) -> ReplyOutcome {
    match o {
        OpOutcome::Replied(r) => r,
        other => panic!("{other:?}"),
    }
}

pub fn a_reply_is_stored_threaded_queued_and_answers_thread_back(h: &mut impl Harness) {
    let first = h.one(request(
        &mail("ann@customer.test", Some("c1@customer.test"), "Printer")
            .referencing(&["c0@customer.test"]),
    ));
    let ticket = match first {
        Outcome::Stored { ticket_id, .. } => ticket_id,
        other => panic!("{other:?}"),
    };
    let ReplyOutcome::Stored { message_id, queued } =
        replied(h.op(Operation::Reply(reply_request(ticket, "On it", false))))
    else {
        panic!("reply not stored")
    };
    assert!(queued);
    let m = h.message(message_id).unwrap();
    assert_eq!(m.direction, Direction::Outbound);
    assert_eq!(m.in_reply_to, vec!["c1@customer.test".to_string()]);
    assert_eq!(
        m.references,
        vec![
            "c0@customer.test".to_string(),
            "c1@customer.test".to_string()
        ]
    );
    assert_eq!(m.from.address, "support@gw.test");
    assert_eq!(m.to[0].address, "ann@customer.test");
    assert_eq!(m.subject, "[MG#1000] Re: Printer");
    let token = token_key()
        .verify(&m.message_id)
        .expect("our Message-ID carries a valid token");
    assert_eq!((token.ticket_id, token.message_id), (ticket, message_id));
    let raw = String::from_utf8(h.raw(message_id).unwrap()).unwrap();
    assert!(
        raw.contains(&format!("Message-ID: <{}>", m.message_id)),
        "{raw}"
    );
    let entry = h.outbox(message_id).unwrap();
    assert_eq!(entry.state, DeliveryState::Queued);
    assert_eq!(entry.rcpt_to, vec!["ann@customer.test".to_string()]);
    assert_eq!(entry.mail_from, "support@gw.test");
    assert_eq!(entry.size, raw.len() as u64);
    assert_eq!(h.pending_outbox(), vec![message_id]);
    assert_eq!(h.ticket(ticket).unwrap().message_count, 2);
    // The customer answers our message: In-Reply-To finds it.
    let our_id: &'static str = Box::leak(m.message_id.clone().into_boxed_str());
    let back = h.one(request(
        &mail("ann@customer.test", Some("c2@customer.test"), "whatever").replying(our_id),
    ));
    assert!(
        matches!(back, Outcome::Stored { ticket_id, new_ticket: false, .. } if ticket_id == ticket)
    );
}

pub fn an_internal_note_is_stored_but_never_queued(h: &mut impl Harness) {
    stored(&h.one(request(&mail("ann@customer.test", Some("n1@c.test"), "Q"))));
    let ReplyOutcome::Stored { message_id, queued } =
        replied(h.op(Operation::Reply(reply_request(1, "call her", true))))
    else {
        panic!()
    };
    assert!(!queued);
    let m = h.message(message_id).unwrap();
    assert_eq!(m.direction, Direction::Note);
    assert_eq!(m.from.address, "agent@gw.test");
    assert!(m.to.is_empty());
    assert_eq!(h.outbox(message_id), None);
    assert!(h.pending_outbox().is_empty());
}

pub fn replies_to_nothing_or_nobody_are_refused(h: &mut impl Harness) {
    assert_eq!(
        replied(h.op(Operation::Reply(reply_request(99, "x", false)))),
        ReplyOutcome::NoTicket
    );
    stored(&h.one(request(&mail("not-an-address", Some("bad@c.test"), "Q"))));
    let r = replied(h.op(Operation::Reply(reply_request(1, "x", false))));
    assert!(
        matches!(r, ReplyOutcome::Invalid(ref why) if why.contains("to")),
        "{r:?}"
    );
    assert!(h.pending_outbox().is_empty());
}

pub fn delivery_results_move_the_outbox_entry(h: &mut impl Harness) {
    stored(&h.one(request(&mail("ann@customer.test", Some("d1@c.test"), "Q"))));
    let ReplyOutcome::Stored { message_id: id, .. } =
        replied(h.op(Operation::Reply(reply_request(1, "a", false))))
    else {
        panic!()
    };
    let update = |attempt| {
        Operation::Delivery(DeliveryUpdate {
            id,
            attempt,
            at: "2026-01-02T00:01:00Z".into(),
            at_ms: 1_767_312_060_000,
        })
    };
    let limited = Attempt::Deferred {
        next_attempt_ms: 5,
        error: "rate_limit:messages_per_window".into(),
        rate_limited: true,
    };
    assert_eq!(
        h.op(update(limited)),
        OpOutcome::Delivery(DeliveryOutcome::Updated(DeliveryState::Deferred))
    );
    assert_eq!(
        h.outbox(id).unwrap().attempts,
        0,
        "waiting for a budget is not an attempt"
    );
    let temp = Attempt::Deferred {
        next_attempt_ms: 9,
        error: "451 4.3.0 try later".into(),
        rate_limited: false,
    };
    h.op(update(temp));
    let e = h.outbox(id).unwrap();
    assert_eq!(
        (e.attempts, e.next_attempt_ms, e.last_error.as_deref()),
        (1, 9, Some("451 4.3.0 try later"))
    );
    assert!(h.send_log("support").is_empty());
    h.op(update(Attempt::Sent {
        reply: "250 2.0.0 Ok: queued as X".into(),
    }));
    let e = h.outbox(id).unwrap();
    assert_eq!(e.state, DeliveryState::Sent);
    assert_eq!(e.relay_reply.as_deref(), Some("250 2.0.0 Ok: queued as X"));
    assert!(h.pending_outbox().is_empty());
    assert_eq!(h.send_log("support"), vec![(1_767_312_060_000, e.size, 1)]);
    // Final is final.
    assert_eq!(
        h.op(update(Attempt::Failed {
            error: "late".into()
        })),
        OpOutcome::Delivery(DeliveryOutcome::Unchanged)
    );
    // A permanent failure.
    let ReplyOutcome::Stored {
        message_id: id2, ..
    } = replied(h.op(Operation::Reply(reply_request(1, "b", false))))
    else {
        panic!()
    };
    h.op(Operation::Delivery(DeliveryUpdate {
        id: id2,
        attempt: Attempt::Failed {
            error: "550 5.1.1 no such user".into(),
        },
        at: "t".into(),
        at_ms: 1,
    }));
    assert_eq!(h.outbox(id2).unwrap().state, DeliveryState::Failed);
    assert!(h.pending_outbox().is_empty());
}

fn updated(o: OpOutcome) -> UpdateOutcome {
    match o {
        OpOutcome::Updated(u) => u,
        other => panic!("{other:?}"),
    }
}

pub fn ticket_changes_are_applied_and_recorded_as_events(h: &mut impl Harness) {
    stored(&h.one(request(&mail("ann@customer.test", Some("u1@c.test"), "Q"))));
    let change = TicketUpdate {
        ticket_id: 1,
        by: Some("lead@gw.test".into()),
        status: Some(TicketStatus::Pending),
        assignee: Some(Some("Bob@GW.test".into())),
        categories: Some(vec!["hardware".into(), "billing".into(), "billing".into()]),
        at: "2026-01-03T00:00:00Z".into(),
    };
    let UpdateOutcome::Updated { ticket, events } =
        updated(h.op(Operation::Update(change.clone())))
    else {
        panic!()
    };
    assert_eq!(ticket.status, TicketStatus::Pending);
    assert_eq!(ticket.assignee.as_deref(), Some("bob@gw.test"));
    assert_eq!(
        ticket.categories,
        vec!["billing".to_string(), "hardware".to_string()]
    );
    assert_eq!(events.len(), 3);
    assert_eq!(h.events(1), events);
    assert_eq!(
        events[0].change,
        Change::Status {
            from: TicketStatus::Open,
            to: TicketStatus::Pending
        }
    );
    assert_eq!(events[1].by.as_deref(), Some("lead@gw.test"));
    assert_eq!(h.ticket(1).unwrap(), *ticket);
    // The same again changes nothing and records nothing.
    let UpdateOutcome::Updated { events, .. } = updated(h.op(Operation::Update(change))) else {
        panic!()
    };
    assert!(events.is_empty());
    assert_eq!(h.events(1).len(), 3);
    // Clearing the assignee and a category.
    let clear = TicketUpdate {
        ticket_id: 1,
        assignee: Some(None),
        categories: Some(vec!["billing".into()]),
        at: "2026-01-04T00:00:00Z".into(),
        ..TicketUpdate::default()
    };
    let UpdateOutcome::Updated { ticket, events } = updated(h.op(Operation::Update(clear))) else {
        panic!()
    };
    assert_eq!(ticket.assignee, None);
    assert_eq!(
        events.iter().map(|e| e.change.clone()).collect::<Vec<_>>(),
        vec![
            Change::Assignee {
                from: Some("bob@gw.test".into()),
                to: None
            },
            Change::Categories {
                added: vec![],
                removed: vec!["hardware".into()]
            },
        ]
    );
}

pub fn bad_ticket_changes_are_refused_and_change_nothing(h: &mut impl Harness) {
    stored(&h.one(request(&mail("ann@customer.test", Some("u2@c.test"), "Q"))));
    let base = TicketUpdate {
        ticket_id: 1,
        at: "t".into(),
        ..TicketUpdate::default()
    };
    let unknown = TicketUpdate {
        categories: Some(vec!["nope".into()]),
        ..base.clone()
    };
    assert!(
        matches!(updated(h.op(Operation::Update(unknown))), UpdateOutcome::Invalid(why) if why.contains("nope"))
    );
    let bad = TicketUpdate {
        assignee: Some(Some("bob\r\nx@y".into())),
        ..base.clone()
    };
    assert!(matches!(
        updated(h.op(Operation::Update(bad))),
        UpdateOutcome::Invalid(_)
    ));
    let missing = TicketUpdate {
        ticket_id: 42,
        status: Some(TicketStatus::Done),
        ..base
    };
    assert_eq!(
        updated(h.op(Operation::Update(missing))),
        UpdateOutcome::NoTicket
    );
    assert!(h.events(1).is_empty());
    assert_eq!(h.ticket(1).unwrap().status, TicketStatus::Open);
}

pub fn a_bounce_of_our_mail_threads_onto_its_ticket_and_fails_the_delivery(h: &mut impl Harness) {
    stored(&h.one(request(&mail("ann@customer.test", Some("b1@c.test"), "Q"))));
    let ReplyOutcome::Stored { message_id: id, .. } =
        replied(h.op(Operation::Reply(reply_request(1, "a", false))))
    else {
        panic!()
    };
    h.op(Operation::Delivery(DeliveryUpdate {
        id,
        attempt: Attempt::Sent {
            reply: "250 2.0.0 Ok".into(),
        },
        at: "t".into(),
        at_ms: 1,
    }));
    let ours = h.message(id).unwrap().message_id;
    // A customer forwarding our message is not a bounce.
    let fwd = Mail {
        reported: vec![ours.clone()],
        ..mail("boss@c.test", Some("f1@c.test"), "Fwd")
    };
    let mut fwd_parsed = fwd.parsed();
    fwd_parsed.markers.is_report = false;
    let o = h.one(request_with(&fwd, fwd_parsed, &["support"], false));
    assert!(stored(&o).2, "a forward opens its own ticket");
    assert_eq!(h.outbox(id).unwrap().state, DeliveryState::Sent);
    // The bounce: automatic, no In-Reply-To, another subject.
    let bounce = mail(
        "mailer-daemon@relay.test",
        Some("dsn@relay.test"),
        "Undelivered Mail",
    )
    .reporting(&ours);
    let mut r = request_for(&bounce, &["support"], false);
    if let Item::Message { automatic, .. } = &mut r.items[0] {
        *automatic = Some((RejectReason::Bounce, "null sender".into()));
    }
    let o = h.one(r);
    match o {
        Outcome::Stored {
            ticket_id,
            new_ticket,
            message_id,
            ..
        } => {
            assert_eq!((ticket_id, new_ticket), (1, false));
            assert!(h.message(message_id).unwrap().auto_submitted);
        }
        other => panic!("the bounce was not threaded: {other:?}"),
    }
    let e = h.outbox(id).unwrap();
    assert_eq!(e.state, DeliveryState::Failed);
    assert_eq!(
        e.last_error.as_deref(),
        Some("bounced: smtp; 550 5.1.1 user unknown")
    );
    // A bounce naming nothing of ours stays a rejection.
    let stray = mail(
        "mailer-daemon@relay.test",
        Some("dsn2@relay.test"),
        "Undelivered",
    )
    .reporting("other@x.test");
    let mut r = request_for(&stray, &["support"], false);
    if let Item::Message { automatic, .. } = &mut r.items[0] {
        *automatic = Some((RejectReason::Bounce, "null sender".into()));
    }
    assert!(matches!(
        h.one(r),
        Outcome::Rejected {
            reason: RejectReason::Bounce,
            ..
        }
    ));
}

// ---- notifications ----

/// Renders `<name> <tag>` as the subject and `<name>: <message>` as the
/// text; fails for `fail`.
struct TestRenderer {
    fail: Option<Notification>,
}

impl Renderer for TestRenderer {
    fn render(&self, n: Notification, d: &TemplateData) -> Result<Rendered, RenderError> {
        if self.fail == Some(n) {
            return Err(RenderError {
                template: format!("{}.txt", n.as_str()),
                detail: "broken".into(),
            });
        }
        Ok(Rendered {
            subject: Some(format!("{} {}", n.as_str(), d.subject)),
            text: format!(
                "{}: {} <{}> {}",
                n.as_str(),
                d.message,
                d.link,
                d.requester_address
            ),
            html: None,
        })
    }

    fn render_answer(&self, name: &str, d: &TemplateData) -> Result<Rendered, RenderError> {
        if name == "broken" {
            return Err(RenderError {
                template: format!("answers/{name}.txt"),
                detail: "broken".into(),
            });
        }
        Ok(Rendered {
            subject: (name != "plain").then(|| format!("answer {name} {}", d.subject)),
            text: format!("answer {name}: {} {}", d.tag, d.requester_address),
            html: None,
        })
    }
}

/// Support (the default mailbox, team desk@staff.test) and sales (no team),
/// fallback fallback@staff.test; 3 per recipient and 5 per ticket an hour.
pub fn notify_settings(tweak: impl FnOnce(&mut NotifySettings)) -> TicketSettings {
    let mut ns = NotifySettings {
        config: NotifyConfig {
            fallback: vec!["fallback@staff.test".into()],
            per_recipient_limit: 3,
            per_recipient_window: std::time::Duration::from_secs(3600),
            per_ticket_limit: 5,
            templates_dir: "unused".into(),
            templates_dir_set: false,
            link: Some("https://hd.test/t/{number}".into()),
        },
        mailboxes: [
            (
                "support".to_string(),
                MailboxNotify {
                    team: vec!["desk@staff.test".into()],
                    overrides: Default::default(),
                },
            ),
            ("sales".to_string(), MailboxNotify::default()),
        ]
        .into_iter()
        .collect(),
        default_mailbox: Some("support".into()),
        own_addresses: ["support@gw.test", "sales@gw.test"]
            .into_iter()
            .map(String::from)
            .collect(),
        renderer: Arc::new(TestRenderer { fail: None }),
    };
    tweak(&mut ns);
    TicketSettings {
        notify: Some(Arc::new(ns)),
        ..settings()
    }
}

/// A queued notification: its name, recipients and stored record.
#[derive(Debug)]
pub struct Notice {
    pub name: String,
    pub to: Vec<String>,
    pub message: StoredMessage,
    pub raw: String,
}

/// Every notification in the outbox, oldest first.
pub fn notices(h: &impl Harness) -> Vec<Notice> {
    let mut out = Vec::new();
    for id in h.pending_outbox() {
        let Some(m) = h.message(id) else { continue };
        let Some(name) = m.source.strip_prefix("notify:") else {
            continue;
        };
        out.push(Notice {
            name: name.to_string(),
            to: h.outbox(id).unwrap().rcpt_to,
            raw: String::from_utf8(h.raw(id).unwrap()).unwrap(),
            message: m,
        });
    }
    out
}

/// No caps.
fn unlimited(ns: &mut NotifySettings) {
    ns.config.per_recipient_limit = 0;
    ns.config.per_ticket_limit = 0;
}

fn names(notices: &[Notice]) -> Vec<(&str, Vec<&str>)> {
    notices
        .iter()
        .map(|n| (n.name.as_str(), n.to.iter().map(String::as_str).collect()))
        .collect()
}

/// The notification suppressions recorded on a ticket.
pub fn suppressions(
    h: &impl Harness,
    ticket: u64,
) -> Vec<(String, Option<String>, SuppressReason)> {
    super::memory::suppressions_in(h.events(ticket))
}

/// (message id, ticket id, opened it).
fn stored_in(o: &Outcome) -> (u64, u64, bool) {
    match o {
        Outcome::Stored {
            message_id,
            ticket_id,
            new_ticket,
            ..
        } => (*message_id, *ticket_id, *new_ticket),
        other => panic!("expected a stored message, got {other:?}"),
    }
}

fn ingest_with(h: &mut impl Harness, s: &TicketSettings, r: CommitRequest) -> Outcome {
    match h.apply_with(s, &[Operation::Ingest(r)]).remove(0) {
        OpOutcome::Ingested(mut o) => o.remove(0),
        other => panic!("{other:?}"),
    }
}

fn change(ticket_id: u64, by: &str) -> TicketUpdate {
    TicketUpdate {
        ticket_id,
        by: Some(by.into()),
        at: "2026-01-01T00:10:00Z".into(),
        ..TicketUpdate::default()
    }
}

fn update_with(h: &mut impl Harness, s: &TicketSettings, u: TicketUpdate) {
    match h.apply_with(s, &[Operation::Update(u)]).remove(0) {
        OpOutcome::Updated(UpdateOutcome::Updated { .. }) => {}
        other => panic!("{other:?}"),
    }
}

fn note_with(h: &mut impl Harness, s: &TicketSettings, ticket: u64, author: &str) {
    let mut r = reply_request(ticket, "see the logs", true);
    r.author = Some(author.into());
    match h.apply_with(s, &[Operation::Reply(r)]).remove(0) {
        OpOutcome::Replied(ReplyOutcome::Stored { .. }) => {}
        other => panic!("{other:?}"),
    }
}

pub fn a_new_ticket_is_acknowledged_and_the_team_told_in_its_transaction(h: &mut impl Harness) {
    let s = notify_settings(|_| {});
    let first = ingest_with(
        h,
        &s,
        request(&mail("Ann@Customer.test", Some("c1@customer.test"), "Printer").text("it smokes")),
    );
    let (_, ticket, new) = stored_in(&first);
    assert!(new);
    let t = h.ticket(ticket).unwrap();
    let n = notices(h);
    assert_eq!(
        names(&n),
        vec![
            ("acknowledgement", vec!["ann@customer.test"]),
            ("new_ticket", vec!["desk@staff.test"])
        ]
    );
    let ack = &n[0];
    // The header policy's input: kind, From the mailbox, the tag, the thread.
    assert!(
        ack.raw
            .starts_with("Auto-Submitted: auto-replied\r\nFrom: support@gw.test\r\n"),
        "{}",
        ack.raw
    );
    assert!(
        n[1].raw.starts_with("Auto-Submitted: auto-generated\r\n"),
        "{}",
        n[1].raw
    );
    assert_eq!(
        ack.message.subject,
        format!("{} acknowledgement Printer", t.tag)
    );
    assert_eq!(
        ack.message.in_reply_to,
        vec!["c1@customer.test".to_string()]
    );
    assert!(ack.message.auto_submitted && ack.message.direction == Direction::Outbound);
    let token = token_key().verify(&ack.message.message_id).unwrap();
    assert_eq!(
        (token.ticket_id, token.message_id),
        (ticket, ack.message.id)
    );
    // Template data: the message, the link, the requester.
    assert!(
        ack.raw
            .contains("acknowledgement: it smokes <https://hd.test/t/1000> Ann@Customer.test"),
        "{}",
        ack.raw
    );
    assert!(n[1].raw.contains("new_ticket: it smokes"));
    // Not among the ticket's messages; the ticket's counts are the customer's.
    assert_eq!(h.ticket_message_ids(ticket).len(), 1);
    assert_eq!(t.message_count, 1);
    assert!(suppressions(h, ticket).is_empty());

    // Her answer to the acknowledgement threads by its Message-ID.
    let ack_id: &'static str = Box::leak(ack.message.message_id.clone().into_boxed_str());
    let answer =
        mail("ann@customer.test", Some("c2@customer.test"), "other words").replying(ack_id);
    let (_, t2, new) = stored_in(&ingest_with(h, &s, request(&answer)));
    assert_eq!((t2, new), (ticket, false));
    let n = notices(h);
    assert_eq!(
        names(&n[2..]),
        vec![("new_message", vec!["desk@staff.test"])]
    );
    assert_eq!(
        n[2].message.in_reply_to,
        vec!["c2@customer.test".to_string()]
    );

    // With an assignee, a new message goes to them, not the team.
    update_with(
        h,
        &s,
        TicketUpdate {
            assignee: Some(Some("bob@staff.test".into())),
            ..change(ticket, "lead@staff.test")
        },
    );
    let third =
        mail("ann@customer.test", Some("c3@customer.test"), "x").replying("c2@customer.test");
    ingest_with(h, &s, request(&third));
    let n = notices(h);
    assert_eq!(
        names(&n[3..]),
        vec![
            ("assignee_changed", vec!["bob@staff.test"]),
            ("new_message", vec!["bob@staff.test"])
        ]
    );
    // A mail from the assignee themself tells nobody.
    let own = mail("bob@staff.test", Some("c4@customer.test"), "x").replying("c3@customer.test");
    ingest_with(h, &s, request(&own));
    assert_eq!(notices(h).len(), 5);
    assert!(suppressions(h, ticket).is_empty());
}

pub fn notes_assignments_and_status_notify_unless_the_actor_is_the_recipient(h: &mut impl Harness) {
    let s = notify_settings(unlimited);
    let (_, ticket, _) = stored_in(&ingest_with(
        h,
        &s,
        request(&mail("ann@customer.test", Some("n1@c.test"), "Q")),
    ));
    let base = notices(h).len();
    // assignee_changed: not when bob takes it himself.
    update_with(
        h,
        &s,
        TicketUpdate {
            assignee: Some(Some("bob@staff.test".into())),
            ..change(ticket, "Bob@Staff.test")
        },
    );
    assert_eq!(notices(h).len(), base);
    update_with(
        h,
        &s,
        TicketUpdate {
            assignee: Some(Some("carol@staff.test".into())),
            ..change(ticket, "bob@staff.test")
        },
    );
    assert_eq!(
        names(&notices(h)[base..]),
        vec![("assignee_changed", vec!["carol@staff.test"])]
    );
    // Clearing the assignee tells nobody.
    update_with(
        h,
        &s,
        TicketUpdate {
            assignee: Some(None),
            ..change(ticket, "lead@staff.test")
        },
    );
    update_with(
        h,
        &s,
        TicketUpdate {
            assignee: Some(Some("carol@staff.test".into())),
            ..change(ticket, "carol@staff.test")
        },
    );
    assert_eq!(notices(h).len(), base + 1);
    // internal_note: to the assignee, not when they wrote it.
    note_with(h, &s, ticket, "carol@staff.test");
    assert_eq!(notices(h).len(), base + 1);
    note_with(h, &s, ticket, "dave@staff.test");
    let n = notices(h);
    assert_eq!(
        names(&n[base + 1..]),
        vec![("internal_note", vec!["carol@staff.test"])]
    );
    assert!(n[base + 1].raw.contains("internal_note: see the logs"));
    // ticket_done: to the requester, not when she set it.
    update_with(
        h,
        &s,
        TicketUpdate {
            status: Some(TicketStatus::Done),
            ..change(ticket, "ann@customer.test")
        },
    );
    assert_eq!(notices(h).len(), base + 2);
    update_with(
        h,
        &s,
        TicketUpdate {
            status: Some(TicketStatus::Open),
            ..change(ticket, "carol@staff.test")
        },
    );
    update_with(
        h,
        &s,
        TicketUpdate {
            status: Some(TicketStatus::Done),
            ..change(ticket, "carol@staff.test")
        },
    );
    let n = notices(h);
    assert_eq!(
        names(&n[base + 2..]),
        vec![("ticket_done", vec!["ann@customer.test"])]
    );
    assert!(
        n[base + 2]
            .raw
            .starts_with("Auto-Submitted: auto-generated\r\n")
    );
    // ticket_rejected / ticket_accepted: to the (last) assignee, not when
    // they set it.
    update_with(
        h,
        &s,
        TicketUpdate {
            status: Some(TicketStatus::Rejected),
            ..change(ticket, "lead@staff.test")
        },
    );
    update_with(
        h,
        &s,
        TicketUpdate {
            status: Some(TicketStatus::Accepted),
            ..change(ticket, "lead@staff.test")
        },
    );
    update_with(
        h,
        &s,
        TicketUpdate {
            status: Some(TicketStatus::Rejected),
            ..change(ticket, "carol@staff.test")
        },
    );
    update_with(
        h,
        &s,
        TicketUpdate {
            status: Some(TicketStatus::Accepted),
            ..change(ticket, "carol@staff.test")
        },
    );
    assert_eq!(
        names(&notices(h)[base + 3..]),
        vec![
            ("ticket_rejected", vec!["carol@staff.test"]),
            ("ticket_accepted", vec!["carol@staff.test"])
        ]
    );
    assert!(suppressions(h, ticket).is_empty());
}

pub fn the_fallback_chain_assignee_team_default_team_fallback(h: &mut impl Harness) {
    let sales_team = notify_settings(|ns| {
        unlimited(ns);
        ns.mailboxes.get_mut("sales").unwrap().team = vec!["sales-desk@staff.test".into()];
    });
    let default_team = notify_settings(unlimited);
    let fallback = notify_settings(|ns| {
        unlimited(ns);
        ns.mailboxes.get_mut("support").unwrap().team.clear();
    });
    let nobody = notify_settings(|ns| {
        unlimited(ns);
        ns.mailboxes.get_mut("support").unwrap().team.clear();
        ns.config.fallback.clear();
    });
    let mut to = Vec::new();
    let mut last = 0;
    for (i, s) in [&sales_team, &default_team, &fallback, &nobody]
        .into_iter()
        .enumerate()
    {
        let subject: &'static str = Box::leak(format!("S{i}").into_boxed_str());
        let m = mail("ann@customer.test", None, subject);
        let (_, ticket, _) = stored_in(&ingest_with(h, s, request_for(&m, &["sales"], false)));
        let n = notices(h);
        to.push(
            n[last..]
                .iter()
                .filter(|n| n.name == "new_ticket")
                .flat_map(|n| n.to.clone())
                .collect::<Vec<_>>(),
        );
        last = n.len();
        if i == 3 {
            assert_eq!(
                suppressions(h, ticket),
                vec![("new_ticket".into(), None, SuppressReason::NoRecipient)]
            );
            // The assignee, the first link, once there is one.
            update_with(
                h,
                s,
                TicketUpdate {
                    assignee: Some(Some("bob@staff.test".into())),
                    ..change(ticket, "lead@staff.test")
                },
            );
            let n = notices(h);
            assert_eq!(
                names(&n[last..]),
                vec![("assignee_changed", vec!["bob@staff.test"])]
            );
        }
    }
    assert_eq!(
        to,
        vec![
            vec!["sales-desk@staff.test".to_string()],
            vec!["desk@staff.test".to_string()],
            vec!["fallback@staff.test".to_string()],
            vec![],
        ]
    );
    // A new message on the assigned ticket goes to the assignee.
    let s = &nobody;
    let t = h.ticket(4).unwrap();
    assert_eq!(t.assignee.as_deref(), Some("bob@staff.test"));
    let m = mail("ann@customer.test", Some("fb2@c.test"), "x");
    let tagged: &'static str = Box::leak(format!("{} more", t.tag).into_boxed_str());
    let m = Mail {
        subject: tagged,
        ..m
    };
    ingest_with(h, s, request_for(&m, &["sales"], false));
    let n = notices(h);
    assert_eq!(
        names(&n[n.len() - 1..]),
        vec![("new_message", vec!["bob@staff.test"])]
    );
}

pub fn loops_are_never_answered_and_each_suppression_is_recorded(h: &mut impl Harness) {
    use crate::config::notify::{NotifyOverride, Recipient};
    let s = notify_settings(|ns| {
        unlimited(ns);
        ns.mailboxes.get_mut("support").unwrap().overrides.insert(
            Notification::NewMessage,
            NotifyOverride {
                active: true,
                recipients: Some(vec![Recipient::Requester, Recipient::Team]),
            },
        );
        ns.mailboxes.get_mut("support").unwrap().overrides.insert(
            Notification::TicketAccepted,
            NotifyOverride {
                active: false,
                recipients: None,
            },
        );
    });
    // Automatic mail threading onto a ticket (a bounce of our answer): the
    // team hears of it, the requester does not.
    let (_, ticket, _) = stored_in(&ingest_with(
        h,
        &s,
        request(&mail("ann@customer.test", Some("l1@c.test"), "Q")),
    ));
    let before = notices(h).len();
    let auto = mail(
        "mailer-daemon@customer.test",
        Some("l2@c.test"),
        "Undelivered",
    )
    .replying("l1@c.test");
    ingest_with(h, &s, request_for(&auto, &["support"], true));
    assert_eq!(
        names(&notices(h)[before..]),
        vec![("new_message", vec!["desk@staff.test"])]
    );
    assert_eq!(
        suppressions(h, ticket),
        vec![(
            "new_message".into(),
            Some("ann@customer.test".into()),
            SuppressReason::AutomaticMail
        )]
    );
    // An inactive notification is not sent and not recorded.
    update_with(
        h,
        &s,
        TicketUpdate {
            status: Some(TicketStatus::Accepted),
            ..change(ticket, "lead@staff.test")
        },
    );
    assert_eq!(suppressions(h, ticket).len(), 1);

    // Mail from one of our own addresses is not acknowledged.
    let before = notices(h).len();
    let (_, own, _) = stored_in(&ingest_with(
        h,
        &s,
        request(&mail("Sales@GW.test", None, "loop")),
    ));
    assert_eq!(
        names(&notices(h)[before..]),
        vec![("new_ticket", vec!["desk@staff.test"])]
    );
    assert_eq!(
        suppressions(h, own),
        vec![(
            "acknowledgement".into(),
            Some("sales@gw.test".into()),
            SuppressReason::OwnAddress
        )]
    );
    // Nor an unusable address.
    let (_, bad, _) = stored_in(&ingest_with(
        h,
        &s,
        request(&mail("not an address", None, "odd")),
    ));
    assert_eq!(
        suppressions(h, bad),
        vec![(
            "acknowledgement".into(),
            Some("not an address".into()),
            SuppressReason::InvalidAddress
        )]
    );
    // A template that does not render: skipped and recorded, the rest goes.
    let broken = notify_settings(|ns| {
        unlimited(ns);
        ns.renderer = Arc::new(TestRenderer {
            fail: Some(Notification::NewTicket),
        });
    });
    let before = notices(h).len();
    let (_, t, _) = stored_in(&ingest_with(
        h,
        &broken,
        request(&mail("eve@customer.test", None, "tmpl")),
    ));
    assert_eq!(
        names(&notices(h)[before..]),
        vec![("acknowledgement", vec!["eve@customer.test"])]
    );
    assert_eq!(
        suppressions(h, t),
        vec![("new_ticket".into(), None, SuppressReason::TemplateError)]
    );
}

pub fn the_caps_hold_across_transactions_and_the_window(h: &mut impl Harness) {
    // Per recipient: 3 an hour. Four tickets from Ann: the fourth is not
    // acknowledged, and the desk's fourth new_ticket is not sent either.
    let s = notify_settings(|_| {});
    let mut tickets = Vec::new();
    for subject in ["a", "b", "c", "d"] {
        let (_, t, _) = stored_in(&ingest_with(
            h,
            &s,
            request(&mail("ann@customer.test", None, subject)),
        ));
        tickets.push(t);
    }
    let acks = notices(h)
        .iter()
        .filter(|n| n.name == "acknowledgement")
        .count();
    assert_eq!(acks, 3);
    assert_eq!(
        suppressions(h, tickets[3]),
        vec![
            (
                "acknowledgement".into(),
                Some("ann@customer.test".into()),
                SuppressReason::RecipientLimit
            ),
            (
                "new_ticket".into(),
                Some("desk@staff.test".into()),
                SuppressReason::RecipientLimit
            ),
        ]
    );
    // An hour later the budget is back.
    let mut later = request(&mail("ann@customer.test", None, "e"));
    later.origin.received_at = "2026-01-01T01:00:01Z".into();
    ingest_with(h, &s, later);
    assert_eq!(
        notices(h)
            .iter()
            .filter(|n| n.name == "acknowledgement")
            .count(),
        4
    );

    // Per ticket: 5 an hour, whoever they go to.
    let s = notify_settings(|ns| ns.config.per_recipient_limit = 0);
    let (_, t, _) = stored_in(&ingest_with(
        h,
        &s,
        request(&mail("zoe@customer.test", Some("z0@c.test"), "z")),
    ));
    for id in ["z1@c.test", "z2@c.test", "z3@c.test", "z4@c.test"] {
        let id: &'static str = id;
        let m = mail("zoe@customer.test", Some(id), "z").replying("z0@c.test");
        ingest_with(h, &s, request(&m));
    }
    let on_ticket = notices(h)
        .iter()
        .filter(|n| n.message.ticket_id == t)
        .count();
    assert_eq!(on_ticket, 5);
    assert_eq!(
        suppressions(h, t),
        vec![("new_message".into(), None, SuppressReason::TicketLimit)]
    );
}

fn submission(raw: &str, mail: Mail, policy: crate::mail::ReplyToPolicy) -> Operation {
    Operation::Submit(super::submit::SubmitRequest {
        account: "crm".into(),
        mailbox: "support".into(),
        reply_to: policy,
        envelope: EnvelopeInfo {
            mail_from: "support@gw.test".into(),
            rcpt_to: vec!["ann@customer.test".into()],
            client: "127.0.0.1:5000".into(),
            helo: "crm.local".into(),
        },
        received:
            "from crm.local ([127.0.0.1]) by gw.test with ESMTPSA; Fri, 02 Jan 2026 03:04:05 +0000"
                .into(),
        raw: Bytes::from(raw.to_string()),
        mail: Arc::new(mail.parsed()),
        at: "2026-01-02T03:04:05Z".into(),
        at_ms: 1_767_323_045_000,
    })
}

fn submitted(o: OpOutcome) -> (u64, Option<(u64, u64)>) {
    match o {
        OpOutcome::Submitted(super::submit::SubmitOutcome::Queued { id, ticket }) => (id, ticket),
        other => panic!("expected a queued submission, got {other:?}"),
    }
}

pub fn a_submission_continues_its_ticket_or_goes_to_the_outbound_log(h: &mut impl Harness) {
    use crate::mail::ReplyToPolicy;
    let (_, ticket, _) = stored_in(&h.one(request(&mail(
        "ann@customer.test",
        Some("c1@customer.test"),
        "Order 4711",
    ))));
    // Answers the customer's message: stored on the ticket, queued, headers
    // kept but Bcc and a forged X-Mailgate-Ticket, Reply-To added.
    let raw = "From: support@gw.test\r\nTo: ann@customer.test\r\nBcc: boss@gw.test\r\n\
X-Mailgate-Ticket: [MG#1]\r\nX-Shop:  kept  as is\r\nMessage-ID: <s1@crm.local>\r\n\
In-Reply-To: <c1@customer.test>\r\nDate: Fri, 02 Jan 2026 03:04:05 +0000\r\n\
Subject: Your order\r\n\r\nShipped.\r\n";
    let m =
        mail("support@gw.test", Some("s1@crm.local"), "Your order").replying("c1@customer.test");
    let (id, on) = submitted(h.op(submission(raw, m, ReplyToPolicy::SetWhenAbsent)));
    assert_eq!(on, Some((ticket, 1000)));
    let sent = String::from_utf8(h.raw(id).unwrap()).unwrap();
    assert!(sent.starts_with(&format!(
        "Received: from crm.local ([127.0.0.1]) by gw.test with ESMTPSA; Fri, 02 Jan 2026 03:04:05 +0000\r\n\
X-Mailgate-Account: crm\r\nX-Mailgate-Message-Id: {id}\r\nX-Mailgate-Ticket: [MG#1000]\r\n\
X-Mailer: mailgate/"
    )), "{sent}");
    assert!(sent.contains("\r\nReply-To: support@gw.test\r\nFrom: support@gw.test\r\nTo: ann@customer.test\r\nX-Shop:  kept  as is\r\nMessage-ID: <s1@crm.local>\r\n"), "{sent}");
    assert!(
        !sent.contains("Bcc") && !sent.contains("[MG#1]\r"),
        "{sent}"
    );
    assert_eq!(sent.matches("Message-ID").count(), 1);
    assert_eq!(sent.matches("Date:").count(), 1);
    let stored = h.message(id).unwrap();
    assert_eq!(stored.direction, Direction::Outbound);
    assert_eq!(stored.source, "submission");
    assert_eq!(h.ticket_message_ids(ticket).len(), 2);
    assert_eq!(h.ticket(ticket).unwrap().message_count, 2);
    let entry = h.outbox(id).unwrap();
    assert_eq!(entry.ticket_id, Some(ticket));
    assert_eq!(entry.account.as_deref(), Some("crm"));
    assert_eq!(entry.rcpt_to, vec!["ann@customer.test".to_string()]);
    assert_eq!(entry.size, sent.len() as u64);
    // The customer's answer to it threads onto the ticket.
    let back = h.one(request(
        &mail("ann@customer.test", Some("c2@customer.test"), "x").replying("s1@crm.local"),
    ));
    assert_eq!(stored_in(&back).1, ticket);

    // The subject tag is enough; Force replaces the submitter's Reply-To.
    let raw = "From: support@gw.test\r\nReply-To: crm@internal.test\r\nSubject: [MG#1000] again\r\n\r\nx\r\n";
    let m = mail("support@gw.test", None, "[MG#1000] again");
    let (id, on) = submitted(h.op(submission(raw, m, ReplyToPolicy::Force)));
    assert_eq!(on, Some((ticket, 1000)));
    let sent = String::from_utf8(h.raw(id).unwrap()).unwrap();
    assert!(!sent.contains("crm@internal.test"), "{sent}");
    assert_eq!(sent.matches("Reply-To: support@gw.test").count(), 1);
    // Message-ID added with our reply token, and a Date.
    let mid = sent
        .split("Message-ID: <")
        .nth(1)
        .and_then(|r| r.split('>').next())
        .expect("a Message-ID was added");
    assert_eq!(token_key().verify(mid).map(|t| t.ticket_id), Some(ticket));
    assert!(
        sent.contains("Date: Fri, 02 Jan 2026 03:04:05 +0000\r\n"),
        "{sent}"
    );

    // Names no ticket: outbound log only, Keep leaves Reply-To absent.
    let raw = "From: support@gw.test\r\nSubject: Newsletter\r\n\r\nx\r\n";
    let m = mail("support@gw.test", None, "Newsletter");
    let (id, on) = submitted(h.op(submission(raw, m, ReplyToPolicy::Keep)));
    assert_eq!(on, None);
    let sent = String::from_utf8(h.raw(id).unwrap()).unwrap();
    assert!(!sent.contains("Reply-To"), "{sent}");
    assert!(
        sent.contains(&format!("Message-ID: <mailgate-{id}@gw.test>")),
        "{sent}"
    );
    let entry = h.outbox(id).unwrap();
    assert_eq!(entry.ticket_id, None);
    assert_eq!(entry.state, DeliveryState::Queued);
    assert_eq!(h.message(id).unwrap().source, "submission");
    assert_eq!(h.ticket_message_ids(ticket).len(), 4);
    assert!(h.pending_outbox().contains(&id));
}

fn trace_of(h: &impl Harness, id: u64) -> DecisionTrace {
    h.message(id).unwrap().trace
}

fn with_trace(mut r: CommitRequest, t: DecisionTrace) -> CommitRequest {
    match &mut r.items[0] {
        Item::Message { trace, .. } | Item::Reject { trace, .. } => *trace = t,
    }
    r
}

pub fn the_trace_says_how_each_message_threaded_and_deduplicated(h: &mut impl Harness) {
    let (m1, _, _) = stored(&h.one(request(&mail("a@x.test", Some("t1@x"), "printer"))));
    let t1 = h.message(m1).unwrap().ticket_id;
    let t = trace_of(h, m1);
    assert_eq!(t.threading, Some(Threading::new_ticket()));
    let dedup = t.dedup.unwrap();
    assert_eq!(dedup.key.as_deref(), Some("id:t1@x"));
    assert_eq!(dedup.outcome, DedupOutcome::New);
    let ticket = h.ticket(t1).unwrap();

    let (m2, _, _) = stored(&h.one(request(
        &mail("a@x.test", Some("t2@x"), "Re: printer").replying("t1@x"),
    )));
    let threading = trace_of(h, m2).threading.unwrap();
    assert_eq!(threading.by, ThreadBy::InReplyTo);
    assert_eq!(threading.value.as_deref(), Some("t1@x"));
    assert_eq!(threading.ticket_id, Some(t1));

    let (m3, _, _) = stored(&h.one(request(
        &mail("a@x.test", Some("t3@x"), "again").referencing(&["zz@x", "t2@x"]),
    )));
    assert_eq!(trace_of(h, m3).threading.unwrap().by, ThreadBy::References);

    let subject: &'static str = format!("Re: {} printer", ticket.tag).leak();
    let (m4, _, _) = stored(&h.one(request(&mail("b@x.test", Some("t4@x"), subject))));
    let threading = trace_of(h, m4).threading.unwrap();
    assert_eq!(threading.by, ThreadBy::SubjectTag);
    assert_eq!(threading.value, Some(ticket.tag.clone()));

    // The same message again: a duplicate, nothing written, the first
    // record's trace unchanged.
    let before = trace_of(h, m4);
    assert_eq!(
        h.one(request(&mail("b@x.test", Some("t4@x"), subject))),
        Outcome::Duplicate(Earlier::Message(m4))
    );
    assert_eq!(trace_of(h, m4), before);
    // A different message reusing the id: its own record, marked so.
    let (m5, _, _) = stored(&h.one(request(
        &mail("c@x.test", Some("t4@x"), "other").text("different"),
    )));
    let dedup = trace_of(h, m5).dedup.unwrap();
    assert_eq!(dedup.outcome, DedupOutcome::IdCollision);
    assert!(dedup.key.unwrap().starts_with("id:t4@x"));
}

pub fn the_trace_of_a_rejection_keeps_what_ingest_saw(h: &mut impl Harness) {
    let seen = DecisionTrace {
        routing: Some(Routing {
            address: Some("help@gw.test".into()),
            mailbox: "support".into(),
            default_used: true,
        }),
        classification: Some(Classification {
            automatic: Some(Automatic {
                reason: RejectReason::AutoSubmitted,
                detail: "Auto-Submitted: auto-replied".into(),
            }),
            signals: vec!["Auto-Submitted: auto-replied".into()],
            overridden: false,
        }),
        ..DecisionTrace::default()
    };
    let r = with_trace(
        request_for(
            &mail("a@x.test", Some("ooo@x"), "Out of office"),
            &["support"],
            true,
        ),
        seen.clone(),
    );
    let Outcome::Rejected { rejection_id, .. } = h.one(r) else {
        panic!("not rejected")
    };
    let t = h.rejection(rejection_id).unwrap().trace;
    assert_eq!(t.routing, seen.routing);
    assert_eq!(t.classification, seen.classification);
    assert_eq!(t.threading, Some(Threading::new_ticket()));
    assert_eq!(t.dedup.unwrap().key.as_deref(), Some("id:ooo@x"));

    // Rejected by a rule: the rules evaluated are kept.
    let mut r = request(&mail("spam@x.test", Some("sp@x"), "buy"));
    let rules = vec![
        RuleTrace {
            rule: "vip".into(),
            scope: RuleScope::Global,
            matched: false,
        },
        RuleTrace {
            rule: "drop-spam".into(),
            scope: RuleScope::Mailbox,
            matched: true,
        },
    ];
    if let Item::Message {
        rules: decision,
        trace,
        ..
    } = &mut r.items[0]
    {
        *decision = Some(Arc::new(crate::rules::Decision {
            rejected_by: Some("drop-spam".into()),
            ..Default::default()
        }));
        trace.rules = rules.clone();
    }
    let Outcome::Rejected {
        rejection_id,
        reason,
    } = h.one(r)
    else {
        panic!("not rejected")
    };
    assert_eq!(reason, RejectReason::Rule);
    let rejection = h.rejection(rejection_id).unwrap();
    assert_eq!(rejection.detail, "rule:drop-spam");
    assert_eq!(rejection.trace.rules, rules);
    assert_eq!(rejection.trace.dedup.unwrap().outcome, DedupOutcome::New);
    // Served as JSON: kinds are snake_case strings.
    let json = serde_json::to_value(h.rejection(1).unwrap()).unwrap();
    assert_eq!(json["trace"]["threading"]["by"], "new_ticket");
    assert_eq!(json["trace"]["routing"]["default_used"], true);
}

fn replay_op(id: u64, request: CommitRequest) -> Operation {
    Operation::Replay(ReplayRequest {
        rejection_id: id,
        request,
        as_ticket: false,
        at: "2026-01-02T00:00:00Z".into(),
    })
}

pub fn a_rejection_is_replayed_once_and_links_its_result(h: &mut impl Harness) {
    let m = mail("a@x.test", Some("r1@x"), "help");
    let Outcome::Rejected { rejection_id, .. } = h.one(request_for(&m, &["support"], true)) else {
        panic!("not rejected")
    };
    // Now as a person's mail: a ticket message that takes over the dedup key.
    let OpOutcome::Replayed(ReplayOutcome::Done { replayed, first }) =
        h.op(replay_op(rejection_id, request(&m)))
    else {
        panic!("not replayed")
    };
    assert!(matches!(first, Some(Outcome::Stored { .. })), "{first:?}");
    let ReplayResult::Message {
        message_id,
        ticket_id,
    } = replayed.outcome
    else {
        panic!("{replayed:?}")
    };
    assert_eq!(
        h.rejection(rejection_id).unwrap().replayed,
        Some(replayed.clone())
    );
    let t = trace_of(h, message_id);
    assert_eq!(t.replay_of, Some(rejection_id));
    assert_eq!(t.dedup.unwrap().outcome, DedupOutcome::Replayed);
    // Again: the first result, nothing new.
    assert_eq!(
        h.op(replay_op(rejection_id, request(&m))),
        OpOutcome::Replayed(ReplayOutcome::Done {
            replayed,
            first: None
        })
    );
    assert_eq!(h.ticket_message_ids(ticket_id), vec![message_id]);
    // The same mail delivered again is a duplicate of the new message.
    assert_eq!(
        h.one(request(&m)),
        Outcome::Duplicate(Earlier::Message(message_id))
    );
    // Oversize: nothing to replay.
    let Outcome::Rejected { rejection_id, .. } =
        h.one(reject_request(b"Subject: big\r\n\r\n", None, false))
    else {
        panic!("not rejected")
    };
    assert_eq!(
        h.op(replay_op(rejection_id, request(&m))),
        OpOutcome::Replayed(ReplayOutcome::NoRaw)
    );
    assert_eq!(
        h.op(replay_op(999, request(&m))),
        OpOutcome::Replayed(ReplayOutcome::NotFound)
    );
}

pub fn old_rejections_are_pruned_with_their_raw_bytes(h: &mut impl Harness) {
    // Received 2026-01-01 (the suite's origin).
    let Outcome::Rejected { rejection_id, .. } = h.one(request_for(
        &mail("a@x.test", Some("old@x"), "s"),
        &["support"],
        true,
    )) else {
        panic!("not rejected")
    };
    let at = |s: &str| crate::parse_rfc3339(s).unwrap();
    let prune = |cutoff| Operation::PruneRejections { cutoff, max: 10 };
    // Not older than the cutoff: kept.
    assert_eq!(
        h.op(prune(at("2026-01-01T00:00:00Z"))),
        OpOutcome::Pruned(0)
    );
    assert!(h.rejection(rejection_id).is_some());
    assert_eq!(
        h.op(prune(at("2026-01-02T00:00:00Z"))),
        OpOutcome::Pruned(1)
    );
    assert!(h.rejection(rejection_id).is_none());
    assert!(h.rejection_raw(rejection_id).is_none());
    assert_eq!(
        h.op(prune(at("2026-01-02T00:00:00Z"))),
        OpOutcome::Pruned(0)
    );
    // The same mail again is judged anew: its dedup entry went with the
    // record, it is not a "duplicate" of something gone.
    let again = h.one(request_for(
        &mail("a@x.test", Some("old@x"), "s"),
        &["support"],
        true,
    ));
    assert!(
        matches!(again, Outcome::Rejected { rejection_id: r, .. } if r != rejection_id),
        "{again:?}"
    );
    // A replayed rejection's key belongs to what the replay made: pruning
    // the rejection leaves it.
    let m = mail("b@x.test", Some("kept@x"), "s");
    let Outcome::Rejected { rejection_id, .. } = h.one(request_for(&m, &["support"], true)) else {
        panic!("not rejected")
    };
    let OpOutcome::Replayed(ReplayOutcome::Done { first, .. }) =
        h.op(replay_op(rejection_id, request(&m)))
    else {
        panic!("not replayed")
    };
    let Some(Outcome::Stored { message_id, .. }) = first else {
        panic!("{first:?}")
    };
    assert_eq!(
        h.op(prune(at("2026-01-02T00:00:00Z"))),
        OpOutcome::Pruned(2)
    );
    assert_eq!(
        h.one(request(&m)),
        Outcome::Duplicate(Earlier::Message(message_id))
    );
}

/// One `#[test]` per rule for the backend built by `$make`.
macro_rules! ticket_rules_suite {
    ($make:expr) => {
        $crate::tickets::suite::ticket_rules_suite!(@tests $make;
            threads_by_references_in_reply_to_and_tag,
            threading_is_scoped_to_the_mailbox,
            duplicates_by_message_id_and_by_content,
            duplicates_inside_one_batch_are_caught,
            a_planted_message_id_does_not_suppress_the_real_mail,
            automatic_mail_threads_or_is_rejected,
            rejections_dedup_and_oversize_without_id_never_does,
            upstream_identity_makes_a_refetch_a_duplicate,
            one_message_for_two_mailboxes_makes_two_tickets,
            attachments_are_kept_with_their_message,
            a_reply_token_threads_and_a_forged_one_does_not,
            a_reply_is_stored_threaded_queued_and_answers_thread_back,
            an_internal_note_is_stored_but_never_queued,
            replies_to_nothing_or_nobody_are_refused,
            delivery_results_move_the_outbox_entry,
            ticket_changes_are_applied_and_recorded_as_events,
            bad_ticket_changes_are_refused_and_change_nothing,
            a_bounce_of_our_mail_threads_onto_its_ticket_and_fails_the_delivery,
            a_new_ticket_is_acknowledged_and_the_team_told_in_its_transaction,
            notes_assignments_and_status_notify_unless_the_actor_is_the_recipient,
            the_fallback_chain_assignee_team_default_team_fallback,
            loops_are_never_answered_and_each_suppression_is_recorded,
            the_caps_hold_across_transactions_and_the_window,
            a_submission_continues_its_ticket_or_goes_to_the_outbound_log,
            the_trace_says_how_each_message_threaded_and_deduplicated,
            the_trace_of_a_rejection_keeps_what_ingest_saw,
            a_rejection_is_replayed_once_and_links_its_result,
            old_rejections_are_pruned_with_their_raw_bytes,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let mut h = $make;
                $crate::tickets::suite::$name(&mut h);
            }
        )*
    };
}
pub(crate) use ticket_rules_suite;

#[cfg(test)]
mod memory {
    use super::*;
    use crate::tickets::apply::apply_op;
    use crate::tickets::memory::MemoryTxn;

    /// The maps, committed whole or not at all.
    #[derive(Default)]
    struct Memory(MemoryTxn);

    impl Harness for Memory {
        fn apply_with(&mut self, settings: &TicketSettings, ops: &[Operation]) -> Vec<OpOutcome> {
            let mut txn = self.0.clone();
            let out = ops
                .iter()
                .map(|op| match apply_op(&mut txn, settings, op) {
                    Ok(o) => o,
                    Err(never) => match never {},
                })
                .collect();
            self.0 = txn;
            out
        }
        fn outbox(&self, id: u64) -> Option<OutboxEntry> {
            use crate::tickets::txn::TicketTxn;
            self.0.outbox(id).unwrap_or_else(|never| match never {})
        }
        fn pending_outbox(&self) -> Vec<u64> {
            self.0.pending_outbox()
        }
        fn send_log(&self, mailbox: &str) -> Vec<(i64, u64, u64)> {
            self.0.send_log(mailbox)
        }
        fn raw(&self, id: u64) -> Option<Vec<u8>> {
            self.0.raw(id)
        }
        fn events(&self, ticket: u64) -> Vec<TicketEvent> {
            self.0.events(ticket)
        }
        fn ticket(&self, id: u64) -> Option<Ticket> {
            use crate::tickets::txn::TicketTxn;
            self.0.ticket(id).unwrap_or_else(|never| match never {})
        }
        fn ticket_message_ids(&self, ticket: u64) -> Vec<u64> {
            self.0.ticket_message_ids(ticket)
        }
        fn message(&self, id: u64) -> Option<StoredMessage> {
            self.0.message(id)
        }
        fn rejection_raw(&self, id: u64) -> Option<Vec<u8>> {
            self.0.rejection_raw(id)
        }
        fn rejection(&self, id: u64) -> Option<super::super::model::Rejection> {
            use crate::tickets::txn::TicketTxn;
            self.0.rejection(id).unwrap_or_else(|never| match never {})
        }
        fn attachment(&self, message: u64, index: u32) -> Option<Vec<u8>> {
            self.0.attachment(message, index)
        }
    }

    ticket_rules_suite!(Memory::default());
}
