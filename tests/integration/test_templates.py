"""Notification templates: a file in notify.templates_dir overrides the
embedded default; check-config renders every template and names the one
that does not parse or render; serve refuses to start with it."""
from dovecot import run_command


def test_a_broken_template_is_named_by_check_config_and_serve(make_gateway, tmp_path):
    tdir = tmp_path / "templates"
    tdir.mkdir()
    (tdir / "ticket_done.txt").write_text("Subject: done {{ ticket.tag }\n\nbroken {% if %}\n")
    g = make_gateway({"notify": {"templates_dir": str(tdir)}}, start=False)
    r = run_command(g, "check-config")
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "ticket_done.txt" in out, out
    g.start(wait=False)
    assert g.proc.wait(timeout=60) != 0
    assert "ticket_done.txt" in g.log_text()


def test_a_good_override_is_used(make_gateway, tmp_path):
    tdir = tmp_path / "templates"
    tdir.mkdir()
    (tdir / "acknowledgement.txt").write_text(
        "Subject: Got it {{ ticket.tag }}\n\nDear {{ requester.address }}, number {{ ticket.number }}.\n")
    g = make_gateway({"notify": {"templates_dir": str(tdir)}})
    r = run_command(g, "check-config")
    assert r.returncode == 0, r.stdout + r.stderr
    from mailmsg import make_msg, new_msgid
    _, t = g.stored(g.send(make_msg("Help", msgid=new_msgid(), from_="ann@customer.test")))
    acks = g.api("/api/v1/outbound")["outbound"]
    assert len(acks) == 1, acks
    raw = g.raw("messages", acks[0]["id"]).body.decode()
    assert f"Got it {t['tag']}" in raw and f"Dear ann@customer.test, number {t['number']}." in raw
    assert "Auto-Submitted: auto-replied" in raw


def test_the_ticket_shows_its_notifications_with_their_delivery(make_gateway):
    from mailmsg import make_msg, new_msgid
    g = make_gateway()
    _, t = g.stored(g.send(make_msg("Help", msgid=new_msgid(), from_="ann@customer.test")))
    ticket = g.ticket(t["id"])
    assert ticket["message_count"] == 1
    notes = ticket["notifications"]
    assert len(notes) == 1, notes
    assert notes[0]["to"][0]["address"] == "ann@customer.test"
    assert notes[0]["delivery"]["state"] in ("queued", "deferred")
