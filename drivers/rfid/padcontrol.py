"""Lay books on a simulated pad from outside the station: a line protocol on a Unix socket.

The demo runs a gate and a return box with simulated RFID readers; a person at the
terminal walks a book through the gate or drops one in the return box with
`thuvien sim SOCKET COMMAND...`, which sends one line here and prints the one-line answer.

    put ITEM [on_loan|in_stock|afi=HH] [parts=N]  lay an item's tag (ISO 28560-3) on the pad
    card CARD                                     lay a patron card's tag
    pass ITEM [seconds]                           put, then lift after a moment (a gate)
    lift ITEM|UID                                 take a tag away
    clear | list | unplug | replug                the scene and hot-plug
    afi ITEM|UID                                  the tag's AFI now (did the kiosk write it?)

Answers start with "ok" or "error". Tags get a stable UID derived from the item id, so the
same book is the same tag in every command. The socket is created with mode 0600.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import socketserver
import threading
from pathlib import Path

from drivers.rfid.reader import normalize_uid
from drivers.rfid.simulated import SimulatedPad, SimulatedTag
from drivers.rfid.tagdata import (
    AFI_IN_STOCK,
    AFI_ON_LOAN,
    DSFID_28560_3,
    TagData,
    TagDataError,
    Usage,
    encode_tag,
)

log = logging.getLogger("thuvien.drivers.rfid.padcontrol")

MAX_LINE = 512
HOLD_SECONDS = 1.5  # how long a book passing a gate stays in its field


def uid_for(item: str, part: int = 1) -> str:
    """A stable, valid ISO 15693 UID for an item's tag: E0 04 (NXP) + 6 bytes of its hash."""
    digest = hashlib.sha256(f"{item}/{part}".encode()).hexdigest().upper()
    return "E004" + digest[:12]


def item_tags(item: str, *, afi: int = AFI_IN_STOCK, parts: int = 1,
              usage: Usage = Usage.LOANABLE, country: str = "VN") -> list[SimulatedTag]:
    """The tags of one item (one per part), with ISO 28560-3 data as a library encodes it."""
    tags = []
    for part in range(1, parts + 1):
        data = encode_tag(TagData(model="28560-3", usage=usage, primary_item_id=item,
                                  parts_in_set=parts, part_number=part, country=country))
        memory = bytearray(28 * 4)
        memory[:len(data)] = data
        tags.append(SimulatedTag(uid=uid_for(item, part), dsfid=DSFID_28560_3, afi=afi, memory=memory))
    return tags


class PadController:
    """Executes the command lines on one pad; `handle` is also what tests call."""

    def __init__(self, pad: SimulatedPad, *, hold: float = HOLD_SECONDS) -> None:
        self.pad = pad
        self.hold = hold
        self._timers: list[threading.Timer] = []

    def _uids_of(self, name: str) -> list[str]:
        with contextlib.suppress(ValueError):
            uid = normalize_uid(name)
            if uid in self.pad.uids:
                return [uid]
        # An item's parts: every UID derived from its id that is on the pad.
        return [uid for uid in self.pad.uids if uid in {uid_for(name, p) for p in range(1, 17)}]

    def handle(self, line: str) -> str:
        words = line.split()
        if not words:
            return "error empty command"
        command, args = words[0].lower(), words[1:]
        try:
            return self._run(command, args)
        except (TagDataError, ValueError) as exc:
            return f"error {exc}"

    def _run(self, command: str, args: list[str]) -> str:
        if command in ("put", "pass"):
            if not args:
                return f"error usage: {command} ITEM"
            item, afi, parts, hold = args[0], AFI_IN_STOCK, 1, self.hold
            for option in args[1:]:
                if option == "on_loan":
                    afi = AFI_ON_LOAN
                elif option == "in_stock":
                    afi = AFI_IN_STOCK
                elif option.startswith("afi="):
                    afi = int(option[4:], 16)
                elif option.startswith("parts="):
                    parts = int(option[6:])
                    if not 1 <= parts <= 16:
                        raise ValueError("parts must be 1..16")
                elif command == "pass":
                    hold = float(option)
                else:
                    return f"error unknown option {option!r}"
            tags = item_tags(item, afi=afi, parts=parts)
            self.pad.place(*tags)
            if command == "pass":
                timer = threading.Timer(hold, lambda: [self.pad.remove(t.uid) for t in tags])
                timer.daemon = True
                timer.start()
                self._timers.append(timer)
            return "ok " + " ".join(tag.uid for tag in tags)
        if command == "card":
            if len(args) != 1:
                return "error usage: card CARD"
            tag = item_tags(args[0], usage=Usage.PATRON_CARD)[0]
            self.pad.place(tag)
            return f"ok {tag.uid}"
        if command == "lift":
            if len(args) != 1:
                return "error usage: lift ITEM|UID"
            uids = self._uids_of(args[0])
            for uid in uids:
                self.pad.remove(uid)
            return "ok " + " ".join(uids) if uids else f"error {args[0]} is not on the pad"
        if command == "afi":
            uids = self._uids_of(args[0]) if len(args) == 1 else []
            if not uids:
                return "error usage: afi ITEM|UID (on the pad)"
            return "ok " + " ".join(f"{self.pad.tag(uid).afi:02X}" for uid in uids)
        if command == "clear":
            self.pad.clear()
            return "ok"
        if command == "list":
            return "ok " + " ".join(f"{uid}:{self.pad.tag(uid).afi:02X}" for uid in self.pad.uids)
        if command == "unplug":
            self.pad.unplug()
            return "ok"
        if command == "replug":
            self.pad.replug()
            return "ok"
        return f"error unknown command {command!r}"

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        while True:
            raw = self.rfile.readline(MAX_LINE + 1)
            if not raw:
                return
            if len(raw) > MAX_LINE:
                self.wfile.write(b"error line too long\n")
                return
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                answer = "error not UTF-8"
            else:
                answer = self.server.controller.handle(line)
            self.wfile.write(answer.encode("utf-8") + b"\n")


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    controller: PadController


class PadControlServer:
    """Serves a pad's controller on a Unix socket until `close()`."""

    def __init__(self, pad: SimulatedPad, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a socket left by a station that was killed
        # Owner only. Not by os.umask around the bind: the umask is the whole process's,
        # and two pads starting at once in one process (a demo, a test run) could leave it
        # at 0177 for good; every program started afterwards (a browser) then made
        # directories it could not enter. Until the chmod the socket is the usual 0755,
        # which no one else can connect to either (connecting needs write permission).
        self._server = _Server(str(self.path), _Handler)
        os.chmod(self.path, 0o600)
        self._server.controller = PadController(pad)
        self._thread = threading.Thread(target=self._server.serve_forever, name="pad-control",
                                        daemon=True)
        self._thread.start()
        log.info("simulated pad: commands on %s", self.path)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.controller.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def send(path: str | os.PathLike[str], line: str, *, timeout: float = 5.0) -> str:
    """One command to a pad's socket; its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(line.strip().encode("utf-8") + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.decode("utf-8").strip()
