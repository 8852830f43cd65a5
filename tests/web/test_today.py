"""The Today page against a known ledger: counts today and this month in the site's time
zone (Hà Nội, UTC+7), busiest stations, top titles, visits, the per-day chart."""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid
from zoneinfo import ZoneInfo

import protocol
from protocol import Op
from server.circulation import Circulation
from server.models import StationEvent, Visit
from server.web.today import local_bounds
from test_desk import Desk, result
from web_fixtures import StaffApp

VN = dt.timezone(dt.timedelta(hours=7))


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=VN)


def desk_lends(app: StaffApp, when: dt.datetime, card: str, book: str) -> None:
    app.clock.now = when
    desk = Desk(app)
    desk.scan(card)
    assert "Đã cho mượn" in result(desk.scan(book))


def desk_returns(app: StaffApp, when: dt.datetime, book: str) -> None:
    app.clock.now = when
    assert "Đã nhận trả" in result(Desk(app).scan(book, mode="return"))


def station_does(core: Circulation, app: StaffApp, station: str, when: dt.datetime, op: Op,
                 args: object, offline: bool = False) -> protocol.Reply:
    app.clock.now = when
    request = protocol.Request(id=str(uuid.uuid4()), op=op, at=when, offline=offline, args=args)
    return core.handle_request(request, station).reply


def visits(app: StaffApp, station: str, since: dt.datetime, count: int) -> None:
    with app.context.sessions.begin() as db:
        event = StationEvent(station=station, event_id=str(uuid.uuid4()), type="gate.visitors",
                             at=since, received_at=since, data={"count": count})
        db.add(event)
        db.flush()
        db.add(Visit(station=station, since=since, until=since + dt.timedelta(minutes=10),
                     count=count, event_id=event.id))


def figures(page: str, section: str) -> dict[str, int]:
    start = page.index(f'<section class="period" id="{section}"')
    part = page[start:page.index("</section>", start)]
    return {name: int(value) for name, value in
            re.findall(r'<dd class="(loans|returns|renewals|visits)">(\d+)</dd>', part)}


def bars(page: str, table: str) -> list[tuple[str, int]]:
    start = page.index(f'id="{table}"')
    part = page[start:page.index("</table>", start)]
    return [(html.unescape(label), int(n)) for label, n in
            re.findall(r'<th scope="row">([^<]+)</th>.*?<td class="num">(\d+)</td>', part, re.S)]


def test_local_bounds_are_the_sites_midnights_in_utc() -> None:
    start, end = local_bounds(dt.date(2026, 11, 21), dt.date(2026, 11, 22), ZoneInfo("Asia/Ho_Chi_Minh"))
    assert start == dt.datetime(2026, 11, 20, 17, 0, tzinfo=dt.timezone.utc)
    assert end == dt.datetime(2026, 11, 21, 17, 0, tzinfo=dt.timezone.utc)


def test_today_counts_a_known_ledger_in_the_sites_time_zone(staff_app: StaffApp) -> None:
    core = Circulation(staff_app.context.sessions, staff_app.config, clock=staff_app.clock)
    # Last month: not this month.
    desk_lends(staff_app, at(31, 23, 30, month=10), "GV-0001", "NV00001")
    # Yesterday 23:30 in Hà Nội (16:30 UTC on the 20th): this month, not today.
    desk_lends(staff_app, at(20, 23, 30), "HS-2025-0002", "TN00002")
    # Today 00:30 in Hà Nội, still the 20th in UTC: today.
    desk_lends(staff_app, at(21, 0, 30), "HS-2025-0001", "TN00001")
    desk_returns(staff_app, at(21, 9, 0), "TN00001")
    desk_lends(staff_app, at(21, 9, 5), "HS-2025-0001", "TK00001")
    # A kiosk lends and takes back; another kiosk's offline replay lends a copy that is
    # on loan to someone else: recorded with its conflict, changed no loan, not counted.
    assert station_does(core, staff_app, "kiosk-1", at(21, 9, 30), Op.LOAN_CHECKOUT,
                        protocol.CheckoutArgs(patron="GV-0001", item="TN00003")).ok
    assert station_does(core, staff_app, "kiosk-1", at(21, 9, 40), Op.LOAN_RETURN,
                        protocol.ReturnArgs(item="TN00003")).ok
    assert not station_does(core, staff_app, "kiosk-2", at(21, 9, 45), Op.LOAN_CHECKOUT,
                            protocol.CheckoutArgs(patron="HS-2025-0002", item="TK00001"),
                            offline=True).ok
    visits(staff_app, "gate-1", at(21, 8, 0), 40)
    visits(staff_app, "gate-1", at(21, 0, 10), 3)    # today, though the 20th in UTC
    visits(staff_app, "gate-1", at(20, 23, 0), 5)    # yesterday
    visits(staff_app, "gate-1", at(31, 10, 0, month=10), 100)  # last month

    staff_app.clock.now = at(21, 10, 0)
    client = staff_app.client()
    staff_app.login(client, "xem")
    response = client.get("/staff/today")
    assert response.status_code == 200
    page = html.unescape(response.text)
    assert "21/11/2026" in page

    assert figures(page, "day") == {"loans": 3, "returns": 2, "renewals": 0, "visits": 43}
    assert figures(page, "month") == {"loans": 4, "returns": 2, "renewals": 0, "visits": 48}
    assert bars(page, "day-stations") == [("web-desk", 3), ("kiosk-1", 2)]
    assert bars(page, "day-titles") == [("Dế Mèn phiêu lưu ký", 2), ("Từ điển Tiếng Việt", 1)]
    assert bars(page, "month-stations") == [("web-desk", 4), ("kiosk-1", 2)]
    assert bars(page, "month-titles") == [("Dế Mèn phiêu lưu ký", 3), ("Từ điển Tiếng Việt", 1)]

    # The per-day chart: one group per day of November, bars scaled to the busiest day.
    assert page.count('<g class="day') == 30
    assert "21/11: 3 lượt mượn, 2 lượt trả" in page
    assert "20/11: 1 lượt mượn, 0 lượt trả" in page
    assert "01/11: 0 lượt mượn, 0 lượt trả" in page
    today_bar = re.search(r'<g class="day today">.*?<rect class="bar-loans"[^>]*height="([\d.]+)"',
                          page, re.S)
    assert today_bar and float(today_bar.group(1)) == 100.0


def test_an_empty_library_shows_zeros_not_errors(staff_app: StaffApp) -> None:
    client = staff_app.client()
    staff_app.login(client, "thuthu")
    page = html.unescape(client.get("/staff/today").text)
    assert figures(page, "day") == {"loans": 0, "returns": 0, "renewals": 0, "visits": 0}
    assert "Chưa có." in page
    assert page.count('<g class="day') == 30
    english = staff_app.client()
    english.cookies.set("lang", "en")
    staff_app.login(english, "thuthu")
    assert "Busiest stations" in english.get("/staff/today").text
