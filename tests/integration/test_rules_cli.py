"""`mailgate rules test FILE.eml`: what the configured mail rules would do
with a message, without changing anything; and the rules themselves,
checked against real mail from the shared corpus (the answer Python's own
parser gives for each message must be the one the rules give)."""

import email
import email.policy
import email.utils
import subprocess
import tarfile

from harness import Gateway

INVOICE = (b"From: Ann Vendor <ann@vendor.example>\r\n"
           b"To: support@example.test\r\n"
           b"Subject: Invoice 4711 for Ticket #1234\r\n"
           b"Message-ID: <inv-4711@vendor.example>\r\n"
           b"X-Priority: 1\r\n"
           b"\r\n"
           b"Please pay.\r\n")

RULES = {
    "server": {"internal_domains": ["corp.example"]},
    "category": [{"key": "invoice"}, {"key": "list"}],
    "rule": [
        {"name": "lists", "when": [{"field": "header", "name": "List-Id", "present": True}],
         "categories": ["list"]},
        {"name": "invoices", "when": [{"field": "subject", "regex": "(?i)\\binvoice\\b"},
                                      {"field": "from", "ends_with": "@vendor.example"}],
         "queue": "billing", "categories": ["invoice"], "link": "Ticket #(\\d+)", "stop": True},
        {"name": "never reached for invoices", "when": [], "status": "pending"},
    ],
}


def rules_test(gw: Gateway, path, *args):
    return subprocess.run([gw.binary, "rules", "test", str(path), "--config", str(gw.config_path),
                           *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_prints_routing_each_rule_and_the_decision(mailgate_bin, tmp_path):
    gw = Gateway(mailgate_bin, tmp_path / "gw", RULES)
    eml = tmp_path / "invoice.eml"
    eml.write_bytes(INVOICE)
    r = rules_test(gw, eml)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "mailbox: support (routed by the recipient support@example.test)" in out, out
    assert "from: ann@vendor.example (external)" in out, out
    assert "classification: written by a person" in out, out
    assert "  [global] lists: no match\n  [global] invoices: matched\n" in out, out
    # stop: the third rule is not evaluated at all.
    assert "never reached" not in out, out
    for line in ("queue billing", "category invoice", "link to ticket number 1234 (rule invoices)",
                 "stop: later rules skipped (rule invoices)"):
        assert f"  {line}\n" in out, out
    assert "status" not in out, out
    # Nothing was written: no database was created.
    data = gw.workdir / "data"
    assert not data.exists() or not any(data.glob("*.redb")), list(data.iterdir())

    # --mailbox and an automatic message: the classification is shown, and
    # a message that matches no rule says nothing changes... except the
    # catch-all third rule, which now runs.
    auto = tmp_path / "auto.eml"
    auto.write_bytes(b"From: robot@corp.example\r\nTo: nobody@example.test\r\n"
                     b"Subject: done\r\nAuto-Submitted: auto-generated\r\n\r\nok\r\n")
    r = rules_test(gw, auto, "--mailbox", "sales")
    assert r.returncode == 0, r.stderr
    assert "mailbox: sales (given with --mailbox)" in r.stdout, r.stdout
    assert "from: robot@corp.example (internal)" in r.stdout, r.stdout
    assert "classification: automatic: auto_submitted (Auto-Submitted: auto-generated)" in r.stdout
    assert "  [global] never reached for invoices: matched\n" in r.stdout, r.stdout
    assert "  status pending\n" in r.stdout, r.stdout


def test_forward_and_answer_are_shown_with_what_would_stop_them(mailgate_bin, tmp_path):
    templates = tmp_path / "templates"
    (templates / "answers").mkdir(parents=True)
    (templates / "answers" / "thanks.txt").write_text("Thanks")
    cfg = {"notify": {"templates_dir": str(templates)},
           "rule": [{"name": "send", "when": [], "forward": ["audit@corp.example"],
                     "forward_mode": "inline", "answer": "thanks", "answer_window": "2h"}]}
    gw = Gateway(mailgate_bin, tmp_path / "gw", cfg)
    eml = tmp_path / "invoice.eml"
    eml.write_bytes(INVOICE)
    r = rules_test(gw, eml)
    assert r.returncode == 0, r.stderr
    assert "  forward to audit@corp.example, original inline (rule send)\n" in r.stdout, r.stdout
    assert ("  answer ann@vendor.example with template thanks (rule send; once per sender per 2h)\n"
            in r.stdout), r.stdout
    assert "(nothing was changed or sent)" in r.stdout
    auto = tmp_path / "auto.eml"
    auto.write_bytes(INVOICE.replace(b"X-Priority: 1", b"Auto-Submitted: auto-replied"))
    r = rules_test(gw, auto)
    assert "(rule send; not sent: automatic mail)" in r.stdout, r.stdout
    assert r.stdout.count("not sent: automatic mail") == 2, r.stdout


def test_staff_mail_and_the_importer_are_described(mailgate_bin, tmp_path):
    cfg = {"server": {"internal_domains": ["corp.example"]},
           "mailbox": [
               {"name": "support", "addresses": ["support@example.test"], "default": True,
                "internal_unthreaded": "ticket"},
               {"name": "sales", "addresses": ["sales@example.test"]},
               {"name": "crm", "addresses": ["crm@example.test"], "role": "importer",
                "import_into": "support", "ticket_number_pattern": "Ticket #(\\d+)"}]}
    gw = Gateway(mailgate_bin, tmp_path / "gw", cfg)
    staff = tmp_path / "staff.eml"
    staff.write_bytes(b"From: Bob <bob@corp.example>\r\nTo: ann@customer.example\r\n"
                      b"Cc: support@example.test\r\nSubject: Your Ticket #1234\r\n\r\nhi\r\n")
    r = rules_test(gw, staff)
    assert r.returncode == 0, r.stderr
    assert ("internal mail: on a ticket it threads onto, an agent message (direction internal); "
            "threading nowhere: a ticket for ann@customer.example (never acknowledged)\n"
            in r.stdout), r.stdout
    r = rules_test(gw, staff, "--mailbox", "sales")
    assert "threading nowhere: rejection internal_unthreaded\n" in r.stdout, r.stdout
    r = rules_test(gw, staff, "--mailbox", "crm")
    assert ("importer: filed onto a ticket of support by subject tag, reply token, References, "
            "ticket number 1234 in the subject, else an open ticket of ann@customer.example"
            in r.stdout), r.stdout
    customer = tmp_path / "customer.eml"
    customer.write_bytes(staff.read_bytes().replace(b"bob@corp.example", b"eve@elsewhere.example"))
    r = rules_test(gw, customer, "--mailbox", "crm")
    assert ("importer: the sender is not in server.internal_domains: rejection "
            "importer_external_sender\n" in r.stdout), r.stdout
    r = rules_test(gw, customer)
    assert "internal mail" not in r.stdout and "importer" not in r.stdout, r.stdout


def test_errors_are_clear(mailgate_bin, tmp_path):
    gw = Gateway(mailgate_bin, tmp_path / "gw", RULES)
    eml = tmp_path / "x.eml"
    eml.write_bytes(INVOICE)
    r = rules_test(gw, eml, "--mailbox", "nope")
    assert r.returncode == 1 and 'no mailbox named "nope"' in r.stderr, r.stderr
    r = rules_test(gw, tmp_path / "missing.eml")
    assert r.returncode == 1 and "missing.eml" in r.stderr, r.stderr
    big = tmp_path / "big.eml"
    big.write_bytes(INVOICE + b"x" * (1048576 + 10))
    r = rules_test(gw, big)
    assert r.returncode == 1 and "over limits.max_message_size" in r.stderr, r.stderr
    bad = Gateway(mailgate_bin, tmp_path / "bad", {
        "rule": [{"name": "r", "when": [{"field": "subject", "regex": "("}], "stop": True}]})
    r = rules_test(bad, eml)
    assert r.returncode == 2 and "rule[0].when[0].regex: invalid regex" in r.stderr, r.stderr


def test_rules_agree_with_an_independent_parser_on_corpus_mail(mailgate_bin, tmp_path,
                                                               corpus_tarball):
    """A header-presence rule and a From-domain rule on 60 real messages:
    each decision must be what Python's email package sees in that message."""
    gw = Gateway(mailgate_bin, tmp_path / "gw", {
        "category": [{"key": "list"}, {"key": "edu"}],
        "rule": [
            {"name": "lists", "when": [{"field": "header", "name": "list-id", "present": True}],
             "categories": ["list"]},
            {"name": "edu", "when": [{"field": "from", "ends_with": ".edu"}], "categories": ["edu"]},
        ]})
    out_dir = tmp_path / "corpus"
    with tarfile.open(corpus_tarball) as tar:
        members = sorted((m for m in tar.getmembers()
                          if m.isfile() and "/easy-ham-1/" in m.name), key=lambda m: m.name)[:60]
        tar.extractall(out_dir, members=members, filter="data")
    seen = {"lists": 0, "edu": 0}
    for m in members:
        path = out_dir / m.name
        raw = path.read_bytes()
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        r = rules_test(gw, path, "--mailbox", "support")
        assert r.returncode == 0, (m.name, r.stderr)
        if r.stdout.startswith("not a usable message"):
            continue
        has_list_id = msg.get("List-Id") is not None
        got = "  [global] lists: matched\n" in r.stdout
        assert got == has_list_id, (m.name, r.stdout)
        from_line = r.stdout.split("from: ", 1)[1].split(" ", 1)[0]
        addr = email.utils.parseaddr(str(msg.get("From", "")))[1].lower()
        assert from_line.lower() == addr, (m.name, from_line, addr)
        assert ("  [global] edu: matched\n" in r.stdout) == addr.endswith(".edu"), (m.name, r.stdout)
        seen["lists"] += got
        seen["edu"] += addr.endswith(".edu")
    # The sample exercises both outcomes of the header rule.
    assert 0 < seen["lists"] < len(members), seen
