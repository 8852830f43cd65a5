"""Idempotency, races and bad input: nothing a station sends can break the server."""

from __future__ import annotations

import json
import queue
import threading

import pytest

from protocol import CheckoutArgs, IdentifyArgs, Op, ReturnArgs, topics


def request_bytes(request_id: str, op: str, args: dict, **extra) -> bytes:  # type: ignore[no-untyped-def]
    return json.dumps({"v": 1, "id": request_id, "op": op, "at": "2026-11-21T09:00:00+07:00",
                       "args": args, **extra}).encode()


def test_same_request_id_twice_changes_the_ledger_once(library, raw) -> None:
    site = library.config.site
    client = raw("station-hand")
    client.subscribe(topics.station_topic(site, "hand", "reply"))
    payload = request_bytes("dup-1", "loan.checkout", {"patron": "HS-2025-0001", "item": "TN00001"})
    client.publish(topics.station_topic(site, "hand", "request"), payload)
    first = json.loads(client.next()[1])
    client.publish(topics.station_topic(site, "hand", "request"), payload)
    second = json.loads(client.next()[1])
    assert first["ok"] is True and first == second
    assert library.ledger_count() == 1

    # A retried return is also applied once, and a later checkout of the same id stays answered.
    ret = request_bytes("dup-2", "loan.return", {"item": "TN00001"})
    for _ in range(3):
        client.publish(topics.station_topic(site, "hand", "request"), ret)
        assert json.loads(client.next()[1])["ok"] is True
    assert library.ledger_count() == 2


def test_two_stations_racing_for_one_copy(library) -> None:
    a, b = library.station("kiosk-a"), library.station("kiosk-b")
    for round_number, item in enumerate(["TN00001", "TN00002", "TN00003"]):
        barrier = threading.Barrier(2)
        replies: queue.Queue = queue.Queue()

        def lend(link, patron):  # type: ignore[no-untyped-def]
            barrier.wait()
            replies.put(link.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron=patron, item=item)))

        threads = [threading.Thread(target=lend, args=(a, "HS-2025-0001")),
                   threading.Thread(target=lend, args=(b, "GV-0001"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        results = [replies.get_nowait(), replies.get_nowait()]
        assert sorted(r.ok for r in results) == [False, True]
        loser = next(r for r in results if not r.ok)
        assert loser.error.code == "item_on_loan"
        assert library.ledger_count() == 2 * round_number + 1
        # Back on the shelf, so no reader's loan limit decides the next round instead.
        assert a.request(Op.LOAN_RETURN, ReturnArgs(item=item)).ok


BAD_PAYLOADS = [
    pytest.param(b"not json at all", None, id="not-json"),
    pytest.param(b"\xff\xfe\x00garbage", None, id="not-utf8"),
    pytest.param(b"[1, 2, 3]", None, id="json-array"),
    pytest.param(request_bytes("bad-types", "loan.checkout", {"patron": 12, "item": ["x"]}),
                 "bad-types", id="wrong-types"),
    pytest.param(request_bytes("bad-op", "loan.steal", {"item": "TN00001"}), "bad-op", id="unknown-op"),
    pytest.param(json.dumps({"v": 7, "id": "bad-v", "op": "loan.return", "at": "2026-11-21T09:00:00+07:00",
                             "args": {"item": "TN00001"}}).encode(), "bad-v", id="unknown-v"),
    pytest.param(request_bytes("bad-missing", "loan.checkout", {"item": "TN00001"}), "bad-missing",
                 id="missing-field"),
    pytest.param(request_bytes("bad-naive", "loan.return", {"item": "TN00001"}, at="2026-11-21T09:00:00"),
                 "bad-naive", id="time-without-offset"),
    pytest.param(request_bytes("bad-extra", "loan.return", {"item": "TN00001", "force": True}),
                 "bad-extra", id="unknown-argument"),
    pytest.param(request_bytes("x" * 300, "loan.return", {"item": "TN00001"}), None, id="unusable-id"),
    pytest.param(b'{"v":1,"id":"huge","op":"loan.return","pad":"' + b"x" * (1024 * 1024) + b'"}', None,
                 id="one-megabyte"),
]


@pytest.mark.parametrize(("payload", "expected_id"), BAD_PAYLOADS)
def test_bad_input_is_answered_or_dropped_and_changes_nothing(library, raw, payload, expected_id) -> None:
    site = library.config.site
    kiosk = library.station()
    assert kiosk.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2025-0001", item="TN00001")).ok
    before = library.ledger_count()

    client = raw("station-junk")
    client.subscribe(topics.station_topic(site, "junk", "reply"))
    client.publish(topics.station_topic(site, "junk", "request"), payload)
    if expected_id is not None:
        reply = json.loads(client.next()[1])
        assert reply["id"] == expected_id
        assert reply["ok"] is False and reply["error"]["code"] == "bad_request"
        assert reply["error"]["message"]
    else:
        # Nothing to answer: the server logs and drops it. Prove it is still serving and
        # that no reply to the junk was sent before the reply to a good request.
        client.publish(topics.station_topic(site, "junk", "request"),
                       request_bytes("after-junk", "item.info", {"item": "TN00002"}))
        reply = json.loads(client.next()[1])
        assert reply["id"] == "after-junk" and reply["ok"] is True
    assert library.ledger_count() == before
    # The server keeps serving: the loan made before is still there and can be returned.
    assert kiosk.request(Op.LOAN_RETURN, ReturnArgs(item="TN00001")).ok
    assert library.ledger_count() == before + 1


def test_request_on_another_sites_topic_is_not_served(library, raw) -> None:
    client = raw("station-elsewhere")
    other = topics.station_topic("another-school", "kiosk-1", "reply")
    client.subscribe(other)
    client.publish(topics.station_topic("another-school", "kiosk-1", "request"),
                   request_bytes("foreign-1", "loan.checkout", {"patron": "HS-2025-0001", "item": "TN00001"}))
    with pytest.raises(queue.Empty):
        client.next(timeout=1.0)
    assert library.ledger_count() == 0
    kiosk = library.station()
    assert kiosk.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2025-0001")).ok


def test_ledger_entries_are_published(library, raw) -> None:
    client = raw("staff-watch")
    client.subscribe(topics.ledger(library.config.site))
    kiosk = library.station()
    assert kiosk.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2025-0001", item="TN00001")).ok
    topic, payload, _ = client.next()
    entry = json.loads(payload)
    assert entry["op"] == "checkout" and entry["item"] == "TN.00001"
    assert entry["patron"] == "HS-2025-0001" and entry["station"] == "kiosk-1"
    assert entry["due"] == "2026-12-01" and entry["title"] == "Dế Mèn phiêu lưu ký"
