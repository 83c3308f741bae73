"""The store holds mail: nobody but the gateway's user may read it, whatever
the umask, and an existing store that others can read is warned about."""
import os
import stat

from mailmsg import make_msg


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_data_dir_and_database_are_private_under_umask_022(make_gateway):
    old = os.umask(0o022)
    try:
        g = make_gateway()
    finally:
        os.umask(old)
    g.send(make_msg("private")).message()
    data = g.workdir / "data"
    assert _mode(data) == 0o700, oct(_mode(data))
    files = [p for p in data.iterdir() if p.is_file()]
    assert files, "no database file in the data dir"
    for f in files:
        assert _mode(f) == 0o600, f"{f.name}: {oct(_mode(f))}"
    assert "readable by other users" not in g.log_text()


def test_a_readable_existing_store_is_warned_about(make_gateway):
    g = make_gateway()
    g.send(make_msg("before")).message()
    g.stop()
    db = next(p for p in (g.workdir / "data").iterdir() if p.suffix == ".redb")
    os.chmod(db, 0o644)
    g.start()
    _, log = g.wait_log("database file is readable by other users")
    assert "database file is readable by other users" in log, g.log_tail()
    assert str(db) in log
    # the warning does not stop the gateway
    g.send(make_msg("after")).message()
