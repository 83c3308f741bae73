"""Message-IDs folded across header lines: stored and served unfolded (no
CR, LF or folding whitespace inside an id), and a reply whose References /
In-Reply-To are folded, even inside the brackets, threads onto its ticket."""

from mailmsg import crlf, new_msgid, unique


def folded_message(subject: str, head_lines: str) -> bytes:
    return crlf(f"From: Alice <alice@client.test>\r\nTo: support@example.test\r\n"
                f"Subject: {subject}\r\n{head_lines}MIME-Version: 1.0\r\n"
                f"Content-Type: text/plain; charset=utf-8\r\n\r\nbody\r\n")


def test_folded_message_id_and_references_thread(gw):
    left, right = f"{unique('fold')}.part", "client.test"
    first_id = f"{left}@{right}"
    # Message-ID folded inside the brackets (as some mailers do with long ids).
    first = folded_message(f"folded {unique()}", f"Message-ID:\r\n <{left}\r\n @{right}>\r\n")
    m1, t1 = gw.stored(gw.send(first))
    assert m1["message_id"] == first_id, repr(m1["message_id"])

    other = new_msgid()
    reply_id = new_msgid()
    # References folded between ids and inside one; a reply by References alone.
    reply = folded_message(
        "Re: something else entirely",
        f"Message-ID: <{reply_id}>\r\nReferences: <{other}>\r\n\t<{left}@\r\n {right}>\r\n")
    m2, t2 = gw.stored(gw.send(reply))
    assert t2["id"] == t1["id"], "a folded References naming a stored Message-ID must thread"
    assert m2["references"] == [other, first_id], m2["references"]

    third = folded_message("Re: again",
                           f"Message-ID: <{new_msgid()}>\r\nIn-Reply-To:\r\n <{reply_id}>\r\n")
    m3, t3 = gw.stored(gw.send(third))
    assert t3["id"] == t1["id"] and m3["in_reply_to"] == [reply_id]

    for m in gw.ticket(t1["id"])["messages"]:
        for value in [m["message_id"], *m["references"], *m["in_reply_to"]]:
            assert not any(c in value for c in "\r\n\t "), f"whitespace in an id: {value!r}"
