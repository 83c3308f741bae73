//! Tests of staff mail: internal mail on a helpdesk mailbox and the BCC
//! importer, on the in-memory backend (the rules are backend-neutral).

use std::sync::Arc;

use super::apply::apply;
use super::importer::Importer;
use super::memory::MemoryTxn;
use super::model::{Direction, Outcome, SuppressReason, TicketStatus};
use super::request::{CommitRequest, Item, TicketSettings, TicketUpdate};
use super::suite::{Mail, mail, notify_settings, request_for};
use super::txn::TicketTxn;
use crate::config::notify::{Notification, NotifyOverride, Recipient};
use crate::config::role::InternalUnthreaded;
use crate::mail::{Person, RejectReason};

fn person(address: &str) -> Person {
    Person {
        address: address.into(),
        name: None,
    }
}

/// `m` for support, marked as staff mail written to `counterpart`.
fn staff(m: &Mail, counterpart: Option<&str>) -> CommitRequest {
    let mut r = request_for(m, &["support"], false);
    for item in &mut r.items {
        if let Item::Message {
            internal,
            counterpart: c,
            ..
        } = item
        {
            *internal = true;
            *c = counterpart.map(person);
        }
    }
    r
}

fn unthreaded_as(mut r: CommitRequest, setting: InternalUnthreaded) -> CommitRequest {
    for item in &mut r.items {
        if let Item::Message { mailbox, .. } = item {
            mailbox.internal_unthreaded = setting;
        }
    }
    r
}

/// `m` for the importer "crm" that files into support.
fn imported(m: &Mail, internal: bool, counterpart: Option<&str>) -> CommitRequest {
    let mut r = if internal {
        staff(m, counterpart)
    } else {
        request_for(m, &["support"], false)
    };
    let pattern = regex::Regex::new(r"Ticket #(\d+)").unwrap();
    for item in &mut r.items {
        if let Item::Message { mailbox, .. } = item {
            mailbox.name = "crm".into();
            mailbox.queue = "CRM".into();
            mailbox.importer = Some(Arc::new(Importer {
                into: "support".into(),
                queue: "SUPPORT".into(),
                ticket_number_pattern: Some(pattern.clone()),
            }));
        }
    }
    r
}

fn one(txn: &mut MemoryTxn, s: &TicketSettings, r: CommitRequest) -> Outcome {
    match apply(txn, s, &r) {
        Ok(mut o) => o.remove(0),
        Err(never) => match never {},
    }
}

/// (message id, ticket id, new ticket).
fn stored(o: &Outcome) -> (u64, u64, bool) {
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

fn rejected(o: &Outcome) -> RejectReason {
    match o {
        Outcome::Rejected { reason, .. } => *reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// (notification, recipients) of everything queued, oldest first.
fn queued(txn: &MemoryTxn) -> Vec<(String, Vec<String>)> {
    txn.pending_outbox()
        .into_iter()
        .map(|id| {
            let m = txn.message(id).unwrap();
            let to = txn.outbox(id).unwrap().unwrap().rcpt_to;
            (m.source, to)
        })
        .collect()
}

fn customer_ticket(txn: &mut MemoryTxn, s: &TicketSettings) -> u64 {
    let first = one(
        txn,
        s,
        request_for(
            &mail("ann@customer.test", Some("c1@customer.test"), "Printer"),
            &["support"],
            false,
        ),
    );
    stored(&first).1
}

#[test]
fn an_internal_reply_threads_as_an_agent_message_and_never_tells_the_requester() {
    // new_message also to the requester: the customer is still not told.
    let s = notify_settings(|ns| {
        ns.mailboxes.get_mut("support").unwrap().overrides.insert(
            Notification::NewMessage,
            NotifyOverride {
                active: true,
                recipients: Some(vec![Recipient::Requester, Recipient::Team]),
            },
        );
    });
    let mut txn = MemoryTxn::default();
    let ticket = customer_ticket(&mut txn, &s);
    let before = queued(&txn).len();
    let reply =
        mail("bob@corp.test", Some("s1@corp.test"), "Re: Printer").replying("c1@customer.test");
    let (message, on, new) = stored(&one(&mut txn, &s, staff(&reply, None)));
    assert_eq!((on, new), (ticket, false));
    let m = txn.message(message).unwrap();
    assert_eq!(m.direction, Direction::Internal);
    assert_eq!(m.from.address, "bob@corp.test");
    let t = TicketTxn::ticket(&txn, ticket).unwrap().unwrap();
    assert_eq!(t.requester.address, "ann@customer.test");
    let after = queued(&txn);
    assert_eq!(
        after[before..].to_vec(),
        vec![(
            "notify:new_message".to_string(),
            vec!["desk@staff.test".to_string()]
        )]
    );
    assert!(txn.suppressions(ticket).contains(&(
        "new_message".into(),
        Some("ann@customer.test".into()),
        SuppressReason::InternalMail
    )));
}

#[test]
fn internal_mail_that_threads_nowhere_is_rejected_by_default() {
    let s = notify_settings(|_| {});
    let mut txn = MemoryTxn::default();
    let m = mail("bob@corp.test", Some("s2@corp.test"), "Lunch?");
    let o = one(&mut txn, &s, staff(&m, Some("ann@customer.test")));
    assert_eq!(rejected(&o), RejectReason::InternalUnthreaded);
    assert!(queued(&txn).is_empty());
    assert_eq!(TicketTxn::ticket(&txn, 1).unwrap(), None);
}

#[test]
fn internal_unthreaded_ticket_opens_one_for_the_customer_without_acknowledgement() {
    let s = notify_settings(|_| {});
    let mut txn = MemoryTxn::default();
    let m = mail("bob@corp.test", Some("s3@corp.test"), "Your order");
    let r = unthreaded_as(
        staff(&m, Some("ann@customer.test")),
        InternalUnthreaded::Ticket,
    );
    let (message, ticket, new) = stored(&one(&mut txn, &s, r));
    assert!(new);
    let t = TicketTxn::ticket(&txn, ticket).unwrap().unwrap();
    assert_eq!(t.requester.address, "ann@customer.test");
    assert_eq!(txn.message(message).unwrap().direction, Direction::Internal);
    // The team hears of the ticket; the customer gets no acknowledgement.
    assert_eq!(
        queued(&txn),
        vec![(
            "notify:new_ticket".to_string(),
            vec!["desk@staff.test".to_string()]
        )]
    );
    assert_eq!(
        txn.suppressions(ticket),
        vec![(
            "acknowledgement".into(),
            Some("ann@customer.test".into()),
            SuppressReason::InternalMail
        )]
    );
    // With nobody outside to open it for, it stays a rejection.
    let alone = mail("bob@corp.test", Some("s4@corp.test"), "Note to self");
    let r = unthreaded_as(staff(&alone, None), InternalUnthreaded::Ticket);
    assert_eq!(
        rejected(&one(&mut txn, &s, r)),
        RejectReason::InternalUnthreaded
    );
}

#[test]
fn the_importer_files_by_tag_reference_number_and_requester_and_sends_nothing() {
    let s = notify_settings(|_| {});
    let mut txn = MemoryTxn::default();
    let ticket = customer_ticket(&mut txn, &s);
    let number = TicketTxn::ticket(&txn, ticket).unwrap().unwrap().number;
    assert_eq!(number, 1000);
    let before = queued(&txn);
    let cases = [
        mail(
            "bob@corp.test",
            Some("b1@corp.test"),
            "Re: [MG#1000] Printer",
        ),
        mail("bob@corp.test", Some("b2@corp.test"), "Printer").replying("c1@customer.test"),
        mail("bob@corp.test", Some("b3@corp.test"), "About Ticket #1000"),
        mail("bob@corp.test", Some("b4@corp.test"), "Follow-up"),
    ];
    for m in &cases {
        // Addressed to someone else but the requester: only the last one
        // finds the ticket by its recipient.
        let to = if m.id == Some("b4@corp.test") {
            "Ann@Customer.test"
        } else {
            "other@customer.test"
        };
        let (message, on, new) = stored(&one(&mut txn, &s, imported(m, true, Some(to))));
        assert_eq!((on, new), (ticket, false), "{:?}", m.subject);
        let stored = txn.message(message).unwrap();
        assert_eq!(stored.direction, Direction::Outbound);
        assert_eq!(stored.source, "bcc_import");
        assert!(txn.outbox(message).unwrap().is_none());
    }
    assert_eq!(queued(&txn), before);
    let t = TicketTxn::ticket(&txn, ticket).unwrap().unwrap();
    assert_eq!((t.message_count, t.status), (5, TicketStatus::Open));
    // The customer's answer to the filed mail threads onto the ticket.
    let answer = mail(
        "ann@customer.test",
        Some("c2@customer.test"),
        "Re: Follow-up",
    )
    .replying("b4@corp.test");
    let o = one(&mut txn, &s, request_for(&answer, &["support"], false));
    assert_eq!(stored(&o).1, ticket);
}

#[test]
fn the_importer_opens_a_done_ticket_otherwise_and_refuses_outsiders() {
    let s = notify_settings(|_| {});
    let mut txn = MemoryTxn::default();
    let ticket = customer_ticket(&mut txn, &s);
    // The requester's only ticket is done: a new, done ticket for them.
    let done = TicketUpdate {
        ticket_id: ticket,
        by: Some("desk@staff.test".into()),
        status: Some(TicketStatus::Done),
        at: "2026-01-01T00:10:00Z".into(),
        ..TicketUpdate::default()
    };
    let op = super::request::Operation::Update(done);
    super::apply::apply_op(&mut txn, &s, &op).unwrap_or_else(|never| match never {});
    let before = queued(&txn);
    let m = mail("bob@corp.test", Some("b5@corp.test"), "Your quote");
    let (message, new_id, new) = stored(&one(
        &mut txn,
        &s,
        imported(&m, true, Some("ann@customer.test")),
    ));
    assert!(new);
    assert_ne!(new_id, ticket);
    let t = TicketTxn::ticket(&txn, new_id).unwrap().unwrap();
    assert_eq!(t.status, TicketStatus::Done);
    assert_eq!(t.mailbox, "support");
    assert_eq!(t.queue, "SUPPORT");
    assert_eq!(t.requester.address, "ann@customer.test");
    assert_eq!(txn.message(message).unwrap().direction, Direction::Outbound);
    // From outside the internal domains: refused, nothing filed.
    let outsider = mail(
        "eve@customer.test",
        Some("e1@customer.test"),
        "[MG#1000] hi",
    );
    let o = one(&mut txn, &s, imported(&outsider, false, None));
    assert_eq!(rejected(&o), RejectReason::ImporterExternalSender);
    assert_eq!(
        TicketTxn::ticket(&txn, ticket)
            .unwrap()
            .unwrap()
            .message_count,
        1
    );
    assert_eq!(queued(&txn), before);
}
