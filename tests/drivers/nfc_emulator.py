"""A contactless card on nfcpy's `udp:` link, run as its own process by the NFC tests.

    python nfc_emulator.py --port 54321 --card tt3 --id 02FE000000000001 --text HS-0123

The process answers a reader (nfcpy in the test process, opened on `udp:localhost:PORT`)
as a real card in the field would. It reads commands on stdin, one a line:

    away      the card is taken off the reader (the UDP port closes: silence, as in the air)
    present   the card is put back
    quit      exit

and prints `ready` once it listens, `away`/`present` after each switch, so a test can wait.

What nfcpy's udp driver can emulate, and so what this script offers (`--card`):

- `tt3`: an NFC Forum Type 3 Tag (FeliCa, 212F or 424F) with an NDEF message, through
  nfcpy's own `Type3TagEmulation`: IDm, and the NDEF text record when `--text` is given.
- `tt2`: an ISO 14443 A card (106A): anticollision answered by the udp driver's
  `listen_tta`, then a minimal NFC Forum Type 2 Tag memory answering READ (0x30) built
  here, because nfcpy has no Type 2 emulation. A 4 or 7 byte UID; NDEF when `--text` given.
- `b`: an ISO 14443 B card (106B): the udp driver's `listen_ttb` answers SENSB_REQ with
  the PUPI; nothing above it (nfcpy has no Type 4 emulation), so a reader gets the
  PUPI and the card then stays silent, as a card whose application it cannot open.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading

import ndef
import nfc
import nfc.clf

PMM = bytes.fromhex("03014B024F4993FF")  # a FeliCa Lite-S timing profile, as nfcpy's tagtool uses
NDEF_SYSTEM_CODE = bytes.fromhex("12FC")


def ndef_message(text: str | None) -> bytes:
    return b"".join(ndef.message_encoder([ndef.TextRecord(text, "vi")])) if text else b""


# --- Type 3 (FeliCa) ----------------------------------------------------------------------

def tt3_memory(message: bytes) -> bytearray:
    blocks = max(1, (len(message) + 15) // 16)
    attr = bytearray(16)
    attr[0] = 0x10                    # mapping version 1.0
    attr[1] = 4                       # blocks per read
    attr[2] = 1                       # blocks per write
    attr[3:5] = blocks.to_bytes(2, "big")
    attr[10] = 0x00                   # read-only
    attr[11:14] = len(message).to_bytes(3, "big")
    attr[14:16] = sum(attr[0:14]).to_bytes(2, "big")
    return attr + bytearray(message) + bytearray(blocks * 16 - len(message))


def serve_tt3(clf: nfc.ContactlessFrontend, idm: bytes, brty: str, message: bytes,
              terminate) -> None:
    memory = tt3_memory(message)

    def on_startup(target):
        target.brty = brty
        target.sensf_res = bytearray(b"\x01" + idm + PMM + NDEF_SYSTEM_CODE)
        return target

    def read_block(number: int, rb: bool, re: bool):
        return memory[number * 16:(number + 1) * 16] if number * 16 < len(memory) else None

    def on_connect(tag):
        tag.add_service(0x0009, read_block, None)
        tag.add_service(0x000B, read_block, None)
        return True

    clf.connect(card={"on-startup": on_startup, "on-connect": on_connect}, terminate=terminate)


# --- Type 2 over ISO 14443 A --------------------------------------------------------------

def tt2_memory(uid: bytes, message: bytes) -> bytearray:
    tlv = bytearray()
    if message:
        tlv += b"\x03" + bytes([len(message)]) + message
    tlv += b"\xFE"
    data_size = max(48, (len(tlv) + 7) // 8 * 8)
    header = bytearray(16)
    header[0:3] = uid[0:3]
    header[3] = 0x88 ^ uid[0] ^ uid[1] ^ uid[2]
    header[4:8] = uid[3:7].ljust(4, b"\x00")
    header[8] = header[4] ^ header[5] ^ header[6] ^ header[7]
    header[12:16] = bytes([0xE1, 0x10, data_size // 8, 0x0F])  # CC: NDEF 1.0, read-only
    return header + tlv + bytearray(data_size - len(tlv))


def anticollision_frames(uid: bytes) -> list[bytes]:
    """The SDD_RES of each cascade level: 4 UID bytes (a cascade tag 0x88 first when more
    follow) and their XOR check byte."""
    levels = [uid] if len(uid) == 4 else [b"\x88" + uid[0:3], uid[3:7]]
    return [level + bytes([level[0] ^ level[1] ^ level[2] ^ level[3]]) for level in levels]


def serve_tt2(clf: nfc.ContactlessFrontend, uid: bytes, message: bytes, terminate) -> None:
    memory = tt2_memory(uid, message)
    sens_res = bytes.fromhex("4400" if len(uid) == 7 else "0400")
    frames = anticollision_frames(uid)
    target = nfc.clf.LocalTarget("106A")
    target.sens_res = bytearray(sens_res)
    target.sdd_res = bytearray(uid)
    target.sel_res = bytearray.fromhex("00")  # Type 2 Tag platform

    def answer(command: bytes) -> bytes | None:
        # A reader re-selects a Type 2 tag after probing a command it lacks (nfcpy probes
        # AUTHENTICATE): the udp driver answers anticollision only in `listen`, so here too.
        if command in (b"\x26", b"\x52"):
            return sens_res
        for level, code in enumerate((0x93, 0x95)[:len(frames)]):
            if command == bytes([code, 0x20]):
                return frames[level]
            if command == bytes([code, 0x70]) + frames[level]:
                return b"\x04" if level + 1 < len(frames) else b"\x00"
        if len(command) == 2 and command[0] == 0x30:  # READ: 4 pages, wrapping at the end
            page = command[1] * 4
            return bytes((memory + memory[:16])[page:page + 16]) if page < len(memory) else b"\x00"
        return None  # silence, as an Ultralight gives for what it does not know

    while not terminate():
        activated = clf.listen(target, 1.0)
        if activated is None:
            continue
        command = activated.tt2_cmd
        try:
            while command is not None and not terminate():
                response = answer(bytes(command))
                command = clf.exchange(bytearray(response) if response else None, 1.0)
        except nfc.clf.CommunicationError:
            continue


# --- ISO 14443 B ----------------------------------------------------------------------------

def serve_b(clf: nfc.ContactlessFrontend, pupi: bytes, terminate) -> None:
    target = nfc.clf.LocalTarget("106B")
    # SENSB_RES: 0x50, PUPI, application data, protocol info (ISO 14443-4 capable).
    target.sensb_res = bytearray(b"\x50" + pupi + bytes.fromhex("00000000") + bytes.fromhex("008171"))
    while not terminate():
        try:
            clf.listen(target, 1.0)
        except nfc.clf.CommunicationError:
            continue


# --- the process ----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--card", choices=("tt3", "tt2", "b"), default="tt3")
    parser.add_argument("--id", default=None, help="IDm (8 bytes), UID (4/7 bytes) or PUPI (4 bytes), hex")
    parser.add_argument("--text", default=None, help="the NDEF text record the card carries")
    parser.add_argument("--brty", choices=("212F", "424F"), default="212F")
    parser.add_argument("--away", action="store_true", help="start with the card off the reader")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    default_id = {"tt3": "02FE000000000001", "tt2": "04A1B2C3D4E5F6", "b": "1A2B3C4D"}[args.card]
    card_id = bytes.fromhex(args.id or default_id)
    message = ndef_message(args.text)

    present = threading.Event()
    quitting = threading.Event()
    if not args.away:
        present.set()

    def commands() -> None:
        for line in sys.stdin:
            word = line.strip()
            if word == "away":
                present.clear()
            elif word == "present":
                present.set()
            elif word == "quit":
                break
            print(word, flush=True)
        quitting.set()
        present.set()  # wake the main loop so it sees `quitting`

    threading.Thread(target=commands, daemon=True).start()
    print("ready", flush=True)
    while not quitting.is_set():
        present.wait()
        if quitting.is_set():
            break

        def terminate() -> bool:
            return quitting.is_set() or not present.is_set()

        # A fresh frontend each time the card comes: closing it frees the port (silence).
        with nfc.ContactlessFrontend(f"udp:localhost:{args.port}") as clf:
            while not terminate():
                if args.card == "tt3":
                    serve_tt3(clf, card_id, args.brty, message, terminate)
                elif args.card == "tt2":
                    serve_tt2(clf, card_id, message, terminate)
                else:
                    serve_b(clf, card_id, terminate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
