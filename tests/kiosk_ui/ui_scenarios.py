"""What a reader or a librarian does at the kiosk, step by step; run by kiosk_driver.py.

Each scenario runs in the kiosk's process, on a thread of its own, against the real
library of conftest.py. It asserts on what the screen shows (label texts, read on
Kivy's thread) and what the voice said, and reports what the test in pytest's process
checks against the ledger.
"""

from __future__ import annotations

import re
import time

from kiosk_driver import Context

DE_MEN = "Dế Mèn phiêu lưu ký"
AN = "HS-2025-0001"


# --- helpers -----------------------------------------------------------------------------

def shows(ctx: Context, *expected: str, timeout: float = 10.0) -> list[str]:
    """Wait until every expected text is (part of) a text on screen."""
    def found() -> list[str] | None:
        from kiosk.ui.pilot import _visible_texts

        texts = list(_visible_texts(ctx.app))
        return texts if all(any(e in t for t in texts) for e in expected) else None

    return ctx.pilot.wait_for(found, timeout, f"{expected!r} on screen")


def absent(ctx: Context, *unexpected: str) -> None:
    texts = ctx.pilot.texts()
    for u in unexpected:
        assert not any(u in t for t in texts), f"{u!r} is on screen: {texts!r}"


def said(ctx: Context, sentence: str, language: str = "vi", timeout: float = 5.0) -> None:
    ctx.pilot.wait_for(lambda: (sentence, language) in ctx.voice.said, timeout,
                       f"the voice to say {sentence!r}; it said {ctx.voice.said[-5:]!r}")


def wait_latest(ctx: Context, screen: str, title_part: str) -> tuple[str, str, str]:
    """The big row of the item just scanned, (tone, title, detail), once it is `title_part`'s."""
    def row() -> tuple[str, str, str] | None:
        children = ctx.app.screen(screen).ids.latest.children
        if children and title_part in children[0].title:
            return children[0].tone, children[0].title, children[0].detail
        return None

    return ctx.pilot.wait_for(row, what=f"{title_part!r} as the latest item on {screen}")


def press(ctx: Context, screen: str, widget_id: str) -> None:
    ctx.pilot.press_id(screen, widget_id)


def press_bar(ctx: Context, widget_id: str) -> None:
    ctx.pilot.press(ctx.pilot.call(lambda: ctx.app.root.ids.bar.ids[widget_id]))


def nothing_personal(ctx: Context, *names: str) -> None:
    texts = ctx.pilot.all_texts() + ctx.pilot.texts()
    for name in names:
        assert not any(name in t for t in texts), f"{name!r} is still held by a screen: {texts!r}"


def key_on_pad(ctx: Context, digits: str) -> None:
    pad = ctx.pilot.widget("staff_login", "keypad")
    keys = ctx.pilot.call(lambda: {k.text: k for k in pad.children})
    for digit in digits:
        ctx.pilot.press(keys[digit])


# --- scenarios ---------------------------------------------------------------------------

def borrow(ctx: Context) -> None:
    """Card, three books (one refused), Done, the summary with its QR code, and idle again."""
    p = ctx.pilot
    p.wait_screen("idle")
    shows(ctx, "Chào mừng đến thư viện!", "Mượn sách", "Trả sách", "Quét thẻ thư viện",
          "Trường THCS Thử nghiệm")
    assert ctx.scanner.feed(AN)
    p.wait_screen("reader")
    shows(ctx, "Xin chào An!", "Lớp 6A1", "Em có thể mượn thêm 3 cuốn.", "Chưa mượn cuốn sách nào.")
    said(ctx, "Xin chào An! Em có thể mượn thêm 3 cuốn. Hãy quét từng cuốn sách muốn mượn.")

    assert ctx.scanner.feed("TN00001")
    p.wait_screen("scanning")
    assert wait_latest(ctx, "scanning", DE_MEN) == ("ok", DE_MEN, "Hạn trả 01/12/2026")
    shows(ctx, "Đã mượn: 1 cuốn", "Còn mượn được: 2")
    said(ctx, f"Đã mượn: {DE_MEN}. Hạn trả: 01/12/2026")
    assert ctx.voice.chimes[-1] == "ok"

    assert ctx.scanner.feed("TK00003")  # the reading room's copy: never lent
    tone, title, reason = wait_latest(ctx, "scanning", "TK00003")
    assert (tone, title) == ("error", "Chưa mượn được: TK00003") and reason, reason
    said(ctx, reason)
    assert ctx.voice.chimes[-1] == "error"
    shows(ctx, "Đã mượn: 1 cuốn")

    assert ctx.scanner.feed("TN00002")
    assert wait_latest(ctx, "scanning", DE_MEN)[0] == "ok"
    shows(ctx, "Đã mượn: 2 cuốn", "Còn mượn được: 1", "Chưa mượn được: TK00003", reason)
    history = p.call(lambda: [(r.tone, r.title) for r in ctx.app.screen("scanning").ids.history.children])
    # Newest first: the refusal, then the first book (Kivy lists children last-added first).
    assert history == [("ok", DE_MEN), ("error", "Chưa mượn được: TK00003")], history

    press(ctx, "scanning", "done")
    p.wait_screen("summary")
    shows(ctx, "Lần này đã mượn 2 cuốn", "Bạn có muốn lấy phiếu mượn không?", "In phiếu", "Mã QR",
          "Không cần")
    rows = p.call(lambda: [(r.title, r.detail) for r in ctx.app.screen("summary").ids.books.children])
    assert rows == [(DE_MEN, "Hạn trả 01/12/2026")] * 2, rows
    press(ctx, "summary", "qr_button")
    shows(ctx, "Dùng điện thoại quét mã này để lưu danh sách sách đã mượn.")
    size = p.call(lambda: ctx.app.screen("summary").qr_texture.size)
    assert size[0] >= 100 and size[0] == size[1], size
    absent(ctx, "In phiếu")
    press(ctx, "summary", "finish")
    p.wait_screen("idle")
    nothing_personal(ctx, "Xin chào An", DE_MEN)
    assert not ctx.printer.jobs
    ctx.report["borrowed"] = 2


def return_books(ctx: Context) -> None:
    """Return mode from the idle screen, a late book, a book not on loan, Done."""
    p = ctx.pilot
    p.wait_screen("idle")
    press(ctx, "idle", "give_back")
    p.wait_screen("return")
    shows(ctx, "Trả sách: hãy quét từng cuốn sách cần trả.", "Đã trả: 0 cuốn")
    said(ctx, "Trả sách: hãy quét từng cuốn sách cần trả.")
    assert ctx.scanner.feed("TN00001")
    tone, title, detail = wait_latest(ctx, "return", DE_MEN)
    days = re.fullmatch(r"Muộn (\d+) ngày", detail)
    assert tone == "warn" and days, (tone, detail)
    said(ctx, f"Đã trả: {DE_MEN}. Cảm ơn! Sách này trả muộn {days[1]} ngày.")
    shows(ctx, "Đã trả: 1 cuốn")
    assert ctx.scanner.feed("TN00003")
    tone, title, reason = wait_latest(ctx, "return", "TN00003")
    assert (tone, title) == ("error", "Chưa trả được: TN00003") and reason
    shows(ctx, "Đã trả: 1 cuốn", DE_MEN, detail)
    press(ctx, "return", "done")
    p.wait_screen("idle")
    shows(ctx, "Đã trả 1 cuốn. Cảm ơn! Hẹn gặp lại nhé!")
    nothing_personal(ctx, DE_MEN)
    ctx.report["days_late"] = int(days[1])


def inactivity(ctx: Context) -> None:
    """Nobody touches anything: the warning with its countdown, then the logout."""
    p = ctx.pilot
    p.wait_screen("idle")
    assert ctx.scanner.feed(AN)
    p.wait_screen("reader")
    started = time.monotonic()
    shows(ctx, "Bạn còn ở đó không?", "Tôi vẫn ở đây", timeout=5)
    warned = time.monotonic() - started
    said(ctx, "Bạn còn ở đó không?")
    seconds = p.call(lambda: ctx.app.warning.ids.seconds.text)
    assert seconds in {"1", "2"}, seconds
    shows(ctx, "Sau ")
    p.wait_screen("idle", timeout=6)
    shows(ctx, "Lần này chưa mượn cuốn nào. Lâu quá không thấy ai, máy đã tự kết thúc.")
    assert p.call(lambda: ctx.app.warning._window is None), "the warning is still open"
    absent(ctx, "Bạn còn ở đó không?")
    nothing_personal(ctx, "Xin chào An")
    ctx.report["warned_after"] = warned
    ctx.report["ended_after"] = time.monotonic() - started


def still_here(ctx: Context) -> None:
    """The reader answers the warning: the session goes on."""
    p = ctx.pilot
    p.wait_screen("idle")
    assert ctx.scanner.feed(AN)
    p.wait_screen("reader")
    shows(ctx, "Bạn còn ở đó không?", timeout=5)
    warned = time.monotonic()
    p.press(p.call(lambda: ctx.app.warning.ids.stay))
    p.wait_for(lambda: ctx.app.warning._window is None, what="the warning to close")
    # Past the moment the warning would have ended the session: still the reader's.
    time.sleep(max(0.0, warned + ctx.args["session"]["warning_s"] + 0.5 - time.monotonic()))
    assert p.current() == "reader", p.texts()
    shows(ctx, "Xin chào An!")


def staff(ctx: Context) -> None:
    """Staff mode: a card with no PIN, a wrong PIN, the right one; lock, devices,
    the locked screen, unlock, and restart (a distinct exit code)."""
    p = ctx.pilot
    p.wait_screen("idle")
    press(ctx, "idle", "staff")
    p.wait_screen("staff_login")
    shows(ctx, "Chế độ cán bộ thư viện", "Hãy quét thẻ cán bộ thư viện.")
    assert p.call(lambda: ctx.app.screen("staff_login").ids.keypad.disabled), "keypad before a card"

    assert ctx.scanner.feed("GV-0001")  # a teacher: no PIN at all
    shows(ctx, "Nhập mã PIN")
    key_on_pad(ctx, "1234")
    shows(ctx, "• • • •")
    press(ctx, "staff_login", "ok")
    shows(ctx, "Mã PIN không đúng.")
    assert p.current() == "staff_login"

    assert ctx.scanner.feed("CB-0001")
    key_on_pad(ctx, "1111")
    press(ctx, "staff_login", "ok")
    shows(ctx, "Mã PIN không đúng.")
    assert p.call(lambda: ctx.app.screen("staff_login").pin) == ""
    key_on_pad(ctx, "24689")
    press(ctx, "staff_login", "erase")  # a slip of the finger, corrected
    press(ctx, "staff_login", "ok")
    p.wait_screen("staff_menu")
    shows(ctx, "Xin chào Lan. Bạn muốn làm gì?", "Trạm đang phục vụ.", "Tạm ngừng phục vụ",
          "Kiểm tra thiết bị", "Khởi động lại", "Thoát chế độ kiosk")

    press(ctx, "staff_menu", "lock")
    shows(ctx, "Trạm đang tạm ngừng phục vụ.", "Mở lại phục vụ")
    assert ctx.link.state == "out_of_service"
    press(ctx, "staff_menu", "devices")
    p.wait_screen("devices")
    shows(ctx, "Máy chủ thư viện", "Máy quét mã vạch", "Máy in phiếu", "Giọng nói")
    rows = p.wait_for(lambda: [(r.title, r.detail) for r in ctx.app.screen("devices").ids.rows.children],
                      what="the device rows")
    assert set(rows) == {("Máy chủ thư viện", "Hoạt động tốt"), ("Máy quét mã vạch", "Hoạt động tốt"),
                         ("Giọng nói", "Hoạt động tốt"), ("Máy in phiếu", "Hoạt động tốt")}, rows
    press(ctx, "devices", "back")
    p.wait_screen("staff_menu")
    press(ctx, "staff_menu", "back")
    p.wait_screen("out_of_service")
    shows(ctx, "Tạm ngừng phục vụ", "Bạn vẫn có thể mượn và trả sách ở bàn thư viện nhé.")
    assert ctx.scanner.feed(AN)  # a reader at a locked kiosk: told, not served
    shows(ctx, "Máy đang tạm nghỉ")
    assert p.current() == "out_of_service"

    press(ctx, "out_of_service", "staff")
    p.wait_screen("staff_login")
    assert ctx.scanner.feed("CB-0001")
    key_on_pad(ctx, "2468")
    press(ctx, "staff_login", "ok")
    p.wait_screen("staff_menu")
    press(ctx, "staff_menu", "lock")  # now "back in service"
    shows(ctx, "Trạm đang phục vụ.")
    assert ctx.link.state == "online"
    ctx.expect_exit(75)
    press(ctx, "staff_menu", "restart")


def server_commands(ctx: Context) -> None:
    """The server locks and unlocks the station, and has it say something."""
    import json

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from protocol import topics

    p = ctx.pilot
    p.wait_screen("idle")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-commander")
    client.connect("127.0.0.1", ctx.args["port"])
    client.loop_start()
    topic = topics.station_topic(ctx.args["site"], "kiosk-1", "command")

    def command(cmd: str, **args: str) -> None:
        body = json.dumps({"v": 1, "id": f"cmd-{cmd}-{time.monotonic_ns()}", "cmd": cmd, "args": args})
        client.publish(topic, body, qos=1).wait_for_publish(5)

    try:
        assert ctx.scanner.feed(AN)
        p.wait_screen("reader")
        command("lock")
        p.wait_screen("out_of_service")  # and the reader's session is over
        shows(ctx, "Tạm ngừng phục vụ")
        nothing_personal(ctx, "Xin chào An")
        command("say", text="Thư viện đóng cửa lúc 16 giờ.")
        shows(ctx, "Thư viện đóng cửa lúc 16 giờ.")
        said(ctx, "Thư viện đóng cửa lúc 16 giờ.")
        command("unlock")
        p.wait_screen("idle")
    finally:
        client.disconnect()
        client.loop_stop()


def offline(ctx: Context) -> None:
    """No broker: the offline screen says what a reader can do instead."""
    p = ctx.pilot
    p.wait_screen("out_of_service", timeout=8)
    shows(ctx, "Mất kết nối với thư viện", "hãy mượn và trả sách ở bàn thư viện nhé")
    assert ctx.scanner.feed(AN)
    shows(ctx, "Máy chưa kết nối được với máy chủ thư viện")
    assert p.current() == "out_of_service"


def language(ctx: Context) -> None:
    """One touch switches every screen between Vietnamese and English, data included."""
    p = ctx.pilot
    p.wait_screen("idle")
    shows(ctx, "Mượn sách", "Tiếng Việt", "English")
    press_bar(ctx, "language")
    shows(ctx, "Welcome to the library!", "Borrow books", "Return books", "Scan your card", "Press Done")
    absent(ctx, "Mượn sách")
    assert ctx.scanner.feed(AN)
    p.wait_screen("reader")
    shows(ctx, "Hello An!", "Class 6A1", "You can borrow 3 more books.", "Scan each book you want to borrow.",
          "No books on loan.")
    said(ctx, "Hello An! You can borrow 3 more books. Scan each book you want to borrow.", "en")
    press_bar(ctx, "language")  # on the reader's screen too
    shows(ctx, "Xin chào An!", "Em có thể mượn thêm 3 cuốn.", "Chưa mượn cuốn sách nào.")
    press_bar(ctx, "language")
    assert ctx.scanner.feed("TN00001")
    assert wait_latest(ctx, "scanning", DE_MEN) == ("ok", DE_MEN, "Due 01/12/2026")
    shows(ctx, "Borrowed: 1 book", "Can still borrow: 2")
    assert ctx.scanner.feed("TK00003")  # refused: the server's Vietnamese gives way to our English
    tone, _title, reason = wait_latest(ctx, "scanning", "TK00003")
    from kiosk.messages import text
    from protocol import ErrorCode

    assert tone == "error" and reason in {text(f"error.{code.value}", "en") for code in ErrorCode}, reason
    said(ctx, reason, "en")
    press(ctx, "scanning", "done")
    p.wait_screen("summary")
    shows(ctx, "Borrowed this time: 1", "Would you like a receipt?", "Print", "QR code", "No receipt")
    press(ctx, "summary", "print_button")
    shows(ctx, "Please take your receipt.")
    assert ctx.printer.jobs, "nothing was printed"
    press_bar(ctx, "language")
    shows(ctx, "Mời lấy phiếu mượn sách.", "Lần này đã mượn 1 cuốn")
    press(ctx, "summary", "finish")
    p.wait_screen("idle")
    shows(ctx, "Mượn sách")
    ctx.report["printed_bytes"] = len(ctx.printer.output)


def wedge(ctx: Context) -> None:
    """A keyboard-wedge scanner's burst is a read; a person typing slowly is ignored."""
    p = ctx.pilot
    p.wait_screen("idle")
    p.keys(AN)  # a burst, then Enter
    p.wait_screen("reader")
    shows(ctx, "Xin chào An!")
    p.keys("TN00001", interval_s=0.15)  # a person typing
    time.sleep(0.5)
    assert p.current() == "reader", p.texts()
    assert p.call(lambda: len(ctx.app.screen("scanning").entries)) == 0
    p.keys("zz", interval_s=0.15, enter=False)  # half a word typed, then the scanner
    p.keys("TN00002")
    p.wait_screen("scanning")
    assert wait_latest(ctx, "scanning", DE_MEN)[0] == "ok"
    ctx.report["reads"] = p.call(lambda: [e.item for e in ctx.app.screen("scanning").entries])


def wedge_typed(ctx: Context) -> None:
    """With accept_typed (the demo), a code typed by hand and Enter is a read."""
    p = ctx.pilot
    p.wait_screen("idle")
    p.keys("HS-2025-00011", interval_s=0.06, enter=False)
    from kivy.core.window import Window

    p.call(lambda: Window.dispatch("on_key_down", 8, 42, None, []))  # Backspace: the typo goes
    p.keys("", interval_s=0.06)
    p.wait_screen("reader")
    shows(ctx, "Xin chào An!")


def touch_targets(ctx: Context) -> None:
    """Every button on every screen is at least 48 px both ways at 800x480."""
    from kivy.core.window import Window
    from kivy.uix.behaviors import ButtonBehavior

    from kiosk.ui.pilot import _walk
    from kiosk.ui.screens import SCREENS

    p = ctx.pilot
    assert p.call(lambda: tuple(Window.size)) == (800, 480)
    p.call(lambda: ctx.app.presenter.warn(20))  # the warning's button too
    small: list[tuple[str, str, tuple[int, int]]] = []
    checked = 0
    for name in [*SCREENS, "warning"]:
        if name != "warning":
            p.call(lambda: ctx.app.go(name))
            p.settle(3)
        def buttons() -> list[tuple[str, tuple[int, int]]]:
            roots = ([ctx.app.warning] if name == "warning"
                     else [ctx.app.root.ids.bar, ctx.app.screen(name)])
            return [(getattr(w, "text", type(w).__name__), (round(w.width), round(w.height)))
                    for root in roots for w in _walk(root)
                    if isinstance(w, ButtonBehavior) and w.opacity > 0 and w.width > 0]
        found = p.call(buttons)
        checked += len(found)
        small += [(name, label, size) for label, size in found if min(size) < 48]
        if name == "warning":
            p.call(ctx.app.warning.stop)
    assert checked >= 40, checked  # the language toggle on each screen, the keypad, ...
    assert not small, small
    ctx.report["buttons"] = checked


def rfid_pad(ctx: Context) -> None:
    """A card, two books and one part of a two-part set laid on the RFID pad at once."""
    from drivers.rfid.simulated import SimulatedTag
    from drivers.rfid.tagdata import TagData, Usage, encode_tag
    from kiosk.messages import text

    def tag(uid: str, item: str, usage: Usage = Usage.LOANABLE, parts: int = 1) -> SimulatedTag:
        memory = bytearray(28 * 4)
        data = encode_tag(TagData("28560-3", usage, item, parts, 1, "VN", "VN-THCS01"))
        memory[:len(data)] = data
        return SimulatedTag(uid=uid, afi=0x07, memory=memory)

    p, pad = ctx.pilot, ctx.rfid
    p.wait_screen("idle")
    books = [tag("E004015000000101", "TN00001"), tag("E004015000000102", "TN00002")]
    part = tag("E004015000000103", "GK00001", parts=2)
    pad.place(*books, part, tag("E004015000000100", AN, Usage.PATRON_CARD))
    p.wait_screen("scanning")
    refusal = text("rfid.incomplete_set", "vi", n=2)
    shows(ctx, "Đã mượn: 2 cuốn", "Chưa mượn được: GK00001", refusal)
    said(ctx, refusal)
    p.wait_for(lambda: [pad.tag(b.uid).afi for b in books] == [0xC2, 0xC2],
               what="both books' AFI on loan")
    assert pad.tag(part.uid).afi == 0x07

    press(ctx, "scanning", "done")
    p.wait_screen("summary")
    shows(ctx, "Lần này đã mượn 2 cuốn")
    press(ctx, "summary", "finish")
    p.wait_screen("idle")
    ctx.report["afi"] = [pad.tag(t.uid).afi for t in (*books, part)]


def stocktake(ctx: Context) -> None:
    """A librarian logs in, chooses Stocktake, counts a shelf by its label (one copy
    misplaced, one code unknown), types another shelf, goes back to the first from the
    recent ones, and finishes: the kiosk lends again."""
    p = ctx.pilot
    p.wait_screen("idle")
    press(ctx, "idle", "staff")
    p.wait_screen("staff_login")
    assert ctx.scanner.feed("CB-0001")
    key_on_pad(ctx, "2468")
    press(ctx, "staff_login", "ok")
    p.wait_screen("staff_menu")
    shows(ctx, "Kiểm kê")
    press(ctx, "staff_menu", "stocktake")
    p.wait_screen("stocktake")
    shows(ctx, "Kiểm kê", "Chưa chọn giá", "Kết thúc", "Chọn giá")
    said(ctx, "Kiểm kê: quét nhãn giá sách hoặc chọn giá, rồi quét từng cuốn sách.")

    assert ctx.scanner.feed("SHELF:Kệ 1")
    shows(ctx, "Giá: Kệ 1")
    said(ctx, "Đang kiểm giá Kệ 1. Hãy quét từng cuốn sách.")
    assert ctx.scanner.feed("TN00001")
    assert wait_latest(ctx, "stocktake", DE_MEN) == ("ok", DE_MEN, "TN.00001 · Đã kiểm")
    shows(ctx, "Giá Kệ 1: đã thấy 1/4 cuốn", "Đợt kiểm kê số 1: đã kiểm 1 cuốn")
    said(ctx, "Đã kiểm")
    assert ctx.scanner.feed("TK00001")
    tone, title, detail = wait_latest(ctx, "stocktake", "Từ điển")
    assert (tone, detail) == ("warn", "TK.00001 · Đã kiểm · Sai vị trí: sách thuộc giá Kệ 2"), detail
    assert ctx.voice.chimes[-1] == "attention"
    assert ctx.scanner.feed("KHONG-CO-MA")
    assert wait_latest(ctx, "stocktake", "KHONG-CO-MA") == ("error", "KHONG-CO-MA", "Không rõ mã")
    assert ctx.voice.chimes[-1] == "error"
    assert ctx.scanner.feed("HS-2025-0001")  # a reader's card: no session behind the librarian
    shows(ctx, "Đang kiểm kê: trạm tạm thời không cho mượn sách.")
    assert p.current() == "stocktake"

    # Another shelf, typed on a keyboard: the keys fill the field, they are no scan.
    field = p.widget("stocktake", "shelf_input")
    p.call(lambda: setattr(field, "focus", True))
    p.keys("Kệ 2", interval_s=0.12, enter=False)
    p.wait_for(lambda: field.text == "Kệ 2", what="the typed shelf")
    press(ctx, "stocktake", "set_shelf")
    shows(ctx, "Giá: Kệ 2", "Giá vừa kiểm:")
    recent = p.wait_for(lambda: {b.text: b for b in ctx.app.screen("stocktake").ids.recent.children}
                        if len(ctx.app.screen("stocktake").ids.recent.children) == 2 else None,
                        what="two recent shelves")
    ctx.pilot.press(recent["Kệ 1"])
    shows(ctx, "Giá: Kệ 1")
    ctx.report["rows"] = p.call(lambda: len(ctx.app.screen("stocktake").entries))

    press(ctx, "stocktake", "end")
    p.wait_screen("idle")
    shows(ctx, "Kết thúc kiểm kê ở trạm này: đã kiểm 2 cuốn.")
    nothing_personal(ctx, "Từ điển", "KHONG-CO-MA")
    # Lending again. Another reader's card: An's, read a moment ago, is still within the
    # duplicate window (a card left on the reader must not start a session).
    assert ctx.scanner.feed("HS-2025-0002")
    p.wait_screen("reader")


def stocktake_station(ctx: Context) -> None:
    """A kiosk configured for stocktake only: it opens on the stocktake screen, counts,
    and "Finish" starts a new round instead of lending."""
    p = ctx.pilot
    p.wait_screen("stocktake")
    shows(ctx, "Chưa chọn giá")
    assert ctx.scanner.feed("TN00002")
    assert wait_latest(ctx, "stocktake", DE_MEN)[0] == "ok"
    press(ctx, "stocktake", "end")
    shows(ctx, "Kết thúc kiểm kê ở trạm này: đã kiểm 1 cuốn.")
    assert p.current() == "stocktake"
    assert p.call(lambda: ctx.app.screen("stocktake").entries) == []
    assert ctx.scanner.feed("TN00002")  # counted before: said so
    assert wait_latest(ctx, "stocktake", DE_MEN) == ("info", DE_MEN, "TN.00002 · Đã kiểm trước đó")
