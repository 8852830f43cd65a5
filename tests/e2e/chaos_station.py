"""One station of the chaos test, run as its own process (tests/e2e/test_chaos.py kills it).

    python tests/e2e/chaos_station.py PLAN.json STATION LIFE

A kiosk as a school runs it, minus the screen: the real session, the store-and-forward
backend with its outbox and card cache, the real MQTT link. Its readers borrow and
return at random (seeded by the plan's seed, the station and its LIFE, the number of
times it was started), copies of its own and copies every station touches, and it
journals (chaos_tools.Journal) what it told each reader, at the moment it tells them.

It keeps a picture of who holds what from its journal, as the readers in front of it
would: a reader borrows what is on the shelf and returns what they hold, so the only
conflicts are those the outages make (and the shared copies). A copy whose fate the
station could not learn is left alone from then on.

When the plan's stop file appears it stops serving, waits for its outbox to drain
(at most the plan's `drain_s`), prints one JSON line and exits: 0 drained, 3 not.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from chaos_tools import UNKNOWN_CARD, UNKNOWN_ITEM, ChaosPlan, Journal, read_journal  # noqa: E402
from kiosk.backend import AcceptedOffline, Answer  # noqa: E402
from kiosk.cardcache import CardCache  # noqa: E402
from kiosk.config import StationConfig  # noqa: E402
from kiosk.link import MqttLink, make_request  # noqa: E402
from kiosk.offline import StoreAndForward  # noqa: E402
from kiosk.outbox import Outbox  # noqa: E402
from kiosk.session import (  # noqa: E402
    ItemBorrowed,
    ItemRefused,
    ItemReturned,
    Outcome,
    PatronIdentified,
    ReturnRefused,
    ServerUnreachable,
    Session,
)
from protocol import Op, Reply, Request  # noqa: E402
from pydantic import BaseModel  # noqa: E402


# The server's limit in chaos_tools.server_config_text, as a reader knows their own.
READER_LIMIT = 4


class RecordingLink(MqttLink):
    """The real link, remembering which ids went out and which the server answered."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.sent: set[str] = set()
        self.answered: set[str] = set()

    def send(self, request: Request, *, timeout: float | None = None) -> Reply:
        self.sent.add(request.id)
        reply = super().send(request, timeout=timeout)
        self.answered.add(reply.id)
        return reply


class Shelf:
    """Who holds what, as far as this station knows."""

    def __init__(self) -> None:
        self.held: dict[str, str] = {}   # item -> card
        self.untouchable: set[str] = set()

    def apply(self, record: dict) -> None:
        item = record.get("item")
        if record["k"] == "told" and record["op"] == Op.LOAN_CHECKOUT.value:
            self.held[item] = record["patron"]
        elif record["k"] == "told" and record["op"] == Op.LOAN_RETURN.value:
            self.held.pop(item, None)
        elif record["k"] == "uncertain" or record.get("by") == "station after a timeout":
            self.held.pop(item, None)
            self.untouchable.add(item)

    @classmethod
    def from_journal(cls, records: list[dict]) -> Shelf:
        shelf = cls()
        fates = {r["id"] for r in records if r["k"] in ("told", "refused", "uncertain") and "id" in r}
        for record in records:
            shelf.apply(record)
        # Sent, and then the station died before it heard: the copy may be anywhere.
        for record in records:
            if record["k"] == "sent" and record["id"] not in fates:
                shelf.held.pop(record["item"], None)
                shelf.untouchable.add(record["item"])
        return shelf


class Station:
    def __init__(self, plan: ChaosPlan, name: str, life: int) -> None:
        self.plan = plan
        self.me = plan.station(name)
        records = read_journal(self.me.journal)
        self.ops = sum(1 for r in records if r["k"] != "sent")
        self.shelf = Shelf.from_journal(records)
        self.began = records[0]["t"] if records else time.time()
        self.journal = Journal(self.me.journal)
        self.rng = random.Random(f"{plan.seed}/{name}/{life}")
        self.config = StationConfig.model_validate({
            "site": plan.site, "station": name,
            "mqtt": {"host": "127.0.0.1", "port": plan.port, "keepalive": 5},
            "session": {"request_timeout_s": plan.request_timeout_s, "duplicate_window_s": 0},
            "offline": {"mode": "returns_and_checkouts", "outbox_path": self.me.outbox,
                        "card_cache_path": self.me.cards, "known_readers_only": False,
                        "max_checkouts_per_reader": 6, "drain_wait_s": 1,
                        "replay_timeout_s": 3, "retry_max_s": 2},
        })
        self.link = RecordingLink(plan.site, name, "kiosk", self.config.mqtt,
                                  request_timeout=plan.request_timeout_s)
        self.forward = StoreAndForward(
            self.link, Outbox(self.me.outbox), self.config.offline,
            cards=CardCache(self.me.cards), request_timeout=plan.request_timeout_s,
            make_request=self._make_request)
        self.session = Session(self, self.config.session, self)
        self._made: Request | None = None
        self._answer: Answer | None = None
        self.told = {"online": 0, "offline": 0}

    # --- what the session sees as its backend: store and forward, watched ---

    def request(self, op: Op, args: BaseModel, *, timeout: float | None = None) -> Answer:
        answer = self.forward.request(op, args, timeout=timeout)
        self._answer = answer
        return answer

    def _make_request(self, op: Op, args: BaseModel) -> Request:
        request = make_request(op, args)
        # Journaled before anything can send or queue it: a ledger entry with this id
        # has an origin even if the station dies before the reader hears of it.
        self.journal.write(k="sent", id=request.id, op=op.value, item=getattr(args, "item"),
                           patron=getattr(args, "patron", None))
        self._made = request
        return request

    # --- what the session tells the reader ---

    def on_outcome(self, outcome: Outcome) -> None:
        made, answer = self._made, self._answer
        if isinstance(outcome, PatronIdentified):
            self._record(k="told", op=Op.PATRON_IDENTIFY.value,
                         how="offline" if outcome.offline else "online")
        elif isinstance(outcome, (ItemBorrowed, ItemReturned)):
            assert made is not None and answer is not None
            op = Op.LOAN_CHECKOUT if isinstance(outcome, ItemBorrowed) else Op.LOAN_RETURN
            if isinstance(answer, AcceptedOffline):
                request_id, how = answer.request_id, "offline"
            else:
                assert isinstance(answer, Reply) and answer.ok
                request_id, how = answer.id, "online"
            assert request_id == made.id, (request_id, made.id)
            self._record(k="told", id=request_id, op=op.value, item=outcome.code,
                         patron=getattr(made.args, "patron", None), how=how)
            self.told[how] += 1
        elif isinstance(outcome, (ItemRefused, ReturnRefused)):
            if made is None:  # refused here, before any request (a blocked reader)
                self._record(k="refused", op="local", item=outcome.item, code=outcome.code)
            elif isinstance(answer, Reply):
                # The server's answer; the station's own before anything went out; or the
                # station's own after the live try went out and timed out, when the
                # server may have applied it all the same (the audit says if it did).
                by = ("server" if answer.id in self.link.answered else
                      "station" if answer.id not in self.link.sent else "station after a timeout")
                self._record(k="refused", id=made.id, op=made.op.value, item=outcome.item,
                             code=outcome.code, by=by)
            else:
                self._record(k="uncertain", id=made.id, op=made.op.value, item=outcome.item)
        elif isinstance(outcome, ServerUnreachable) and made is not None:
            self._record(k="uncertain", id=made.id, op=made.op.value,
                         item=getattr(made.args, "item"))

    def _record(self, **record: object) -> None:
        self.journal.write(**record)
        self.shelf.apply(record)
        self.ops += 1

    # --- a reader at the station ---

    def scan(self, code: str) -> None:
        self._made, self._answer = None, None
        self.session.scan(code)

    def visit(self) -> None:
        rng = self.rng
        card = UNKNOWN_CARD if rng.random() < 0.02 else rng.choice(self.me.readers)
        mine = sorted(item for item, holder in self.shelf.held.items() if holder == card)
        # A reader at the limit mostly knows it and brings books back first; one in ten
        # tries anyway (refused online, a conflict offline).
        at_limit = len(mine) >= READER_LIMIT and rng.random() < 0.9
        if mine and (at_limit or rng.random() < 0.35):
            self.session.start_return()
            back = rng.sample(mine, rng.randint(1, min(3, len(mine))))
            found = [c for c in self.plan.shared
                     if c not in self.shelf.held and c not in self.shelf.untouchable]
            if found and rng.random() < 0.1:
                back.append(rng.choice(found))  # a shared book left on a table
            for item in back:
                self.scan(item)
            self.session.done()
            return
        self.scan(card)
        if self.session.patron is None:
            return
        wanted = rng.randint(1, 3)
        if rng.random() < 0.9:
            wanted = min(wanted, READER_LIMIT - len(mine))
        for _ in range(wanted):
            pool = self.plan.shared if rng.random() < 0.35 else self.me.copies
            shelf = [c for c in pool if c not in self.shelf.held and c not in self.shelf.untouchable]
            if rng.random() < 0.01:
                shelf = [UNKNOWN_ITEM]
            if not shelf:
                break
            self.scan(rng.choice(shelf))
        self.session.done()

    # --- life ---

    def run(self) -> int:
        connected = self.link.start(wait=5)
        self.forward.start()
        print(json.dumps({"ready": self.me.name, "connected": connected}), flush=True)
        stop = Path(self.plan.stop_file)
        # Operations spread over the serving time (from the first life's first record),
        # so that every outage meets readers; a station back from one catches up.
        interval = self.plan.serving_s / self.plan.max_ops
        while not stop.exists():
            if self.ops >= self.plan.max_ops:
                time.sleep(0.2)
                continue
            self.visit()
            time.sleep(max(0.0, self.began + self.ops * interval - time.time())
                       + self.rng.uniform(0, 0.02))
        deadline = time.monotonic() + self.plan.drain_s
        while len(self.forward.outbox) and time.monotonic() < deadline:
            if not self.forward.wait_drained(1.0):
                time.sleep(0.2)
        left = len(self.forward.outbox)
        print(json.dumps({"station": self.me.name, "outbox": left, "ops": self.ops,
                          "replayed": self.forward.replayed, **self.told}), flush=True)
        self.forward.stop()
        self.link.stop()
        self.forward.close()
        self.journal.close()
        return 0 if left == 0 else 3


def main(argv: list[str]) -> int:
    plan = ChaosPlan.load(argv[1])
    station = plan.station(argv[2])
    Path(station.log).parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=station.log, level=logging.WARNING,
                        format=f"%(asctime)s {argv[2]}/{argv[3]} %(levelname)s %(name)s: %(message)s")
    logging.getLogger("thuvien.kiosk.link").setLevel(logging.INFO)
    return Station(plan, argv[2], int(argv[3])).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
