"""The outbox: durable, ordered, idempotent by id, and it survives a kill -9."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kiosk.outbox import Outbox, OutboxError
from protocol import CheckoutArgs, ErrorCode, Op, Reply, Request, ReturnArgs

ROOT = Path(__file__).resolve().parents[2]
VN = dt.timezone(dt.timedelta(hours=7))
AT = dt.datetime(2026, 9, 12, 9, 0, tzinfo=VN)


def _request(n: int, op: Op = Op.LOAN_RETURN) -> Request:
    args = ReturnArgs(item=f"TN{n:05d}") if op is Op.LOAN_RETURN else \
        CheckoutArgs(patron="HS-2024-0001", item=f"TN{n:05d}")
    return Request(id=f"req-{n}", op=op, at=AT + dt.timedelta(minutes=n), offline=True, args=args)


def test_pending_requests_come_back_in_order_and_leave_when_answered(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    for n in (3, 1, 2):  # accepted in this order, whatever their ids say
        assert outbox.add(_request(n))
    assert len(outbox) == 3
    assert [q.request.id for q in outbox.pending()] == ["req-3", "req-1", "req-2"]

    assert outbox.mark_done("req-1", Reply.failure("req-1", ErrorCode.ITEM_NOT_ON_LOAN, "Không"))
    assert not outbox.mark_done("req-1", Reply.failure("req-1", ErrorCode.INTERNAL, "x"))  # once
    assert [q.request.id for q in outbox.pending()] == ["req-3", "req-2"]
    assert len(outbox) == 2
    assert outbox.summary("req-1") == {"ok": False, "code": "item_not_on_loan", "message": "Không"}
    assert outbox.summary("req-3") is None  # still pending


def test_a_request_comes_back_exactly_as_it_was_accepted(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    request = _request(7, Op.LOAN_CHECKOUT)
    outbox.add(request, reader="abc")
    outbox.close()
    again = Outbox(tmp_path / "outbox.db")
    (queued,) = again.pending()
    assert queued.request == request
    assert queued.request.at == AT + dt.timedelta(minutes=7)  # the station's time, offset kept
    assert queued.request.at.utcoffset() == dt.timedelta(hours=7)
    assert queued.reader == "abc"
    assert again.pending_for("abc", "loan.checkout") == 1
    assert again.pending_for("abc", "loan.return") == 0


def test_an_id_is_queued_once(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    assert outbox.add(_request(1))
    assert not outbox.add(_request(1))
    assert len(outbox) == 1


def test_the_file_is_wal_with_full_sync(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.add(_request(1))
    outbox.mark_done("req-1", Reply.failure("req-1", ErrorCode.ITEM_NOT_ON_LOAN, "x"))  # relaxes, then restores
    mode = outbox._db.execute("PRAGMA journal_mode").fetchone()[0]
    sync = outbox._db.execute("PRAGMA synchronous").fetchone()[0]
    assert (mode, sync) == ("wal", 2)  # 2 is FULL
    assert (tmp_path / "outbox.db").stat().st_mode & 0o077 == 0


def test_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OutboxError, match="cannot open the outbox"):
        Outbox(blocker / "outbox.db")


def test_a_damaged_row_is_set_aside_not_blocking_the_rest(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.add(_request(1))
    outbox.add(_request(2))
    with sqlite3.connect(tmp_path / "outbox.db") as raw:
        raw.execute("UPDATE outbox SET request = '{\"junk' WHERE id = 'req-1'")
    assert [q.request.id for q in outbox.pending()] == ["req-2"]
    assert len(outbox) == 1
    assert outbox.summary("req-1")["code"] == "unreadable"  # type: ignore[index]


def test_answered_requests_are_pruned_after_a_while(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.add(_request(1))
    outbox.add(_request(2))
    outbox.mark_done("req-1", Reply.failure("req-1", ErrorCode.ITEM_NOT_ON_LOAN, "x"))
    assert outbox.prune(dt.timedelta(days=7)) == 0
    assert outbox.prune(dt.timedelta(seconds=-1)) == 1  # every answered one
    assert [q.request.id for q in outbox.pending()] == ["req-2"]


_CHILD = textwrap.dedent("""
    import datetime as dt, sys, time
    from kiosk.outbox import Outbox
    from protocol import Op, Request, ReturnArgs
    outbox = Outbox(sys.argv[1])
    at = dt.datetime(2026, 9, 12, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    for n in range(int(sys.argv[2])):
        outbox.add(Request(id=f"kill-{n}", op=Op.LOAN_RETURN, at=at, offline=True,
                           args=ReturnArgs(item=f"TN{n:05d}")))
        # What the reader is told, only once the request is committed.
        print(f"told kill-{n}", flush=True)
    time.sleep(60)
""")


def test_what_the_reader_was_told_survives_a_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), "5"], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout is not None
    told = []
    try:
        while len(told) < 5:
            line = child.stdout.readline()
            assert line, "the child ended early"
            told.append(line.split()[1])
        # Killed right after the last reader was told, with no chance to close anything.
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert child.returncode == -signal.SIGKILL
    outbox = Outbox(path)
    assert [q.request.id for q in outbox.pending()] == told
    assert len(outbox) == 5


def test_the_summary_keeps_the_servers_result(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.add(_request(1, Op.LOAN_CHECKOUT))
    reply = Reply(id="req-1", ok=True, result={"item": "TN.00001", "title": "Dế Mèn", "due": "2026-09-19"})
    outbox.mark_done("req-1", reply)
    with sqlite3.connect(tmp_path / "outbox.db") as raw:
        (summary,) = raw.execute("SELECT summary FROM outbox WHERE id='req-1'").fetchone()
    assert json.loads(summary) == {"ok": True, "result": reply.result}
