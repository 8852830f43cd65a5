"""`thuvien sim`: lay books on the demo's simulated RFID readers (gate, return box).

    thuvien sim gate-1 pass GK-00012      walk a book through the gate
    thuvien sim returnbox-1 put GK-00012  drop a book in the return box
    thuvien sim gate-1 list               what lies in the reader's field

The station's simulated reader listens on `<demo dir>/sim/<station>.sock` (its config's
`control`); a path with a slash names the socket itself. See drivers/rfid/padcontrol.py
for every command.
"""

from __future__ import annotations

import sys
from pathlib import Path

HELP = """Lệnh / commands:
  put ITEM [on_loan|in_stock|afi=HH] [parts=N]   đặt sách lên đầu đọc / lay a book on the reader
  pass ITEM [seconds]                            mang sách qua cổng / walk a book through the gate
  card CARD                                      đặt thẻ thư viện / lay a library card
  lift ITEM|UID   clear   list   afi ITEM        nhấc ra, dọn, xem / lift, clear, look
  unplug   replug                                rút và cắm lại đầu đọc / unplug and replug"""


def socket_path(station: str, folder: str) -> Path:
    if "/" in station:
        return Path(station)
    return Path(folder) / "sim" / f"{station}.sock"


def run_sim(station: str, words: list[str], folder: str) -> int:
    from drivers.rfid.padcontrol import send

    if not words:
        print(HELP)
        return 2
    path = socket_path(station, folder)
    try:
        answer = send(path, " ".join(words))
    except FileNotFoundError:
        print(f"thuvien sim: không thấy trạm {station} ({path}): bản demo có đang chạy không?\n"
              f"thuvien sim: no station {station} at {path}: is the demo running?", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"thuvien sim: {path}: {exc}", file=sys.stderr)
        return 1
    print(answer)
    return 0 if answer.startswith("ok") else 1
