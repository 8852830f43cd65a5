"""Staff sign-in over HTTP: sessions, CSRF, lockout, roles, logout, expiry, language."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import func, select

from server.models import Alert, LoginThrottle, StaffSession
from server.web.auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE
from server.web.config import WebConfig
from web_fixtures import PASSWORDS, StaffApp

LOCKED_VI = "Đăng nhập sai quá nhiều lần"


def add_alert(app: StaffApp, message: str = "Cổng gate-1 báo động: Dế Mèn phiêu lưu ký") -> int:
    with app.context.sessions.begin() as db:
        row = Alert(alert_id=f"a-{message}", type="gate.alarm", station="gate-1",
                    at=app.clock(), message=message, data={})
        db.add(row)
        db.flush()
        return row.id


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def test_login_sets_a_safe_session_cookie_and_opens_the_pages(staff_app: StaffApp) -> None:
    client = staff_app.client()
    response = staff_app.login(client, "thuthu")
    assert response.status_code == 303 and response.headers["location"] == "/staff/stations"
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/staff" in cookie
    assert "Secure" not in cookie  # plain http, cookie_secure off
    token = client.cookies.get(SESSION_COOKIE)
    with staff_app.context.sessions() as db:
        stored = db.scalars(select(StaffSession.token_hash)).all()
    assert len(stored) == 1 and token not in stored[0]  # only a hash is kept

    page = client.get("/staff/stations")
    assert page.status_code == 200
    assert "Trường THCS Thử nghiệm" in page.text and "Đang đăng nhập: thuthu (thủ thư)" in page.text
    assert "content-security-policy" in page.headers


def test_secure_cookie_when_configured(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = StaffApp.create(tmp_path, WebConfig(cookie_secure=True))
    try:
        client = app.client()
        form = client.get("/staff/login")
        assert "Secure" in form.headers["set-cookie"]
        # A Secure cookie is not sent back over http: read it from the header by hand.
        token = re.search(rf"{LOGIN_CSRF_COOKIE}=([^;]+)", form.headers["set-cookie"]).group(1)
        client.cookies.set(LOGIN_CSRF_COOKIE, token, path="/staff")
        response = client.post("/staff/login", data={"name": "xem", "password": PASSWORDS["xem"],
                                                     "csrf_token": token})
        assert response.status_code == 303
        assert "Secure" in response.headers["set-cookie"]
    finally:
        app.close()


def test_wrong_password_and_unknown_user_are_told_the_same(staff_app: StaffApp) -> None:
    client = staff_app.client()
    wrong = staff_app.login(client, "thuthu", "not-the-password")
    unknown = staff_app.login(client, "nobody", "not-the-password")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "Sai tên đăng nhập hoặc mật khẩu." in response.text
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    assert client.get("/staff/stations").status_code == 303


def test_five_failures_lock_the_account_for_15_minutes(staff_app: StaffApp) -> None:
    attacker = staff_app.client("10.0.0.66")
    for attempt in range(4):
        assert staff_app.login(attacker, "thuthu", f"guess-{attempt}").status_code == 401
    locked = staff_app.login(attacker, "thuthu", "guess-5")
    assert locked.status_code == 429 and LOCKED_VI in locked.text and "15 phút" in locked.text

    # The right password from another computer does not open a locked account...
    librarian = staff_app.client("10.0.0.5")
    refused = staff_app.login(librarian, "thuthu")
    assert refused.status_code == 429 and LOCKED_VI in refused.text
    assert librarian.get("/staff/stations").status_code == 303

    # ...until the 15 minutes are over.
    staff_app.clock.now += dt.timedelta(minutes=15, seconds=1)
    assert staff_app.login(librarian, "thuthu").status_code == 303
    assert librarian.get("/staff/stations").status_code == 200


def test_five_failures_from_one_address_lock_that_address(staff_app: StaffApp) -> None:
    attacker = staff_app.client("10.0.0.66")
    for name in ("a1", "b2", "c3", "d4"):
        assert staff_app.login(attacker, name, "whatever-1").status_code == 401
    assert staff_app.login(attacker, "e5", "whatever-1").status_code == 429
    # Even a real account with its real password is refused from that address,
    assert staff_app.login(attacker, "xem").status_code == 429
    # while the account itself stays usable from elsewhere.
    assert staff_app.login(staff_app.client("10.0.0.7"), "xem").status_code == 303


def test_failures_spread_over_more_than_15_minutes_do_not_lock(staff_app: StaffApp) -> None:
    client = staff_app.client()
    for _ in range(4):
        assert staff_app.login(client, "admin", "bad-password").status_code == 401
    staff_app.clock.now += dt.timedelta(minutes=16)
    assert staff_app.login(client, "admin", "bad-password").status_code == 401
    assert staff_app.login(client, "admin").status_code == 303
    with staff_app.context.sessions() as db:
        keys = set(db.scalars(select(LoginThrottle.key)))
    assert "user:admin" not in keys  # a good login clears the account's count


def test_login_without_the_csrf_token_is_refused(staff_app: StaffApp) -> None:
    client = staff_app.client()
    client.get("/staff/login")
    response = client.post("/staff/login", data={"name": "thuthu", "password": PASSWORDS["thuthu"],
                                                 "csrf_token": "forged"})
    assert response.status_code == 403
    assert "Biểu mẫu đã hết hạn hoặc không đến từ trang này" in response.text
    assert client.get("/staff/stations").status_code == 303


def test_forms_need_the_session_csrf_token(staff_app: StaffApp) -> None:
    alert_id = add_alert(staff_app)
    client = staff_app.client()
    staff_app.login(client, "thuthu")
    for token in ("", "x" * 43):
        response = client.post(f"/staff/alerts/{alert_id}/ack", data={"csrf_token": token})
        assert response.status_code == 403
        assert "Biểu mẫu đã hết hạn" in response.text
    assert client.post("/staff/logout", data={}).status_code == 403
    with staff_app.context.sessions() as db:
        assert db.get(Alert, alert_id).acknowledged_at is None
    assert client.get("/staff/alerts").status_code == 200  # still signed in


def test_acknowledge_records_who_and_when(staff_app: StaffApp) -> None:
    alert_id = add_alert(staff_app)
    client = staff_app.client()
    staff_app.login(client, "thuthu")
    page = client.get("/staff/alerts")
    assert "Cổng gate-1 báo động: Dế Mèn phiêu lưu ký" in page.text and "cổng báo động" in page.text
    staff_app.clock.now += dt.timedelta(minutes=3)
    done = client.post(f"/staff/alerts/{alert_id}/ack", data={"csrf_token": csrf_of(page.text)})
    assert done.status_code == 303 and done.headers["location"] == "/staff/alerts?notice=acked"
    with staff_app.context.sessions() as db:
        alert = db.get(Alert, alert_id)
    assert alert.acknowledged_by == "thuthu"
    assert alert.acknowledged_at == staff_app.clock()
    after = client.get("/staff/alerts?notice=acked").text
    assert "Không có cảnh báo nào." in after and "bởi thuthu lúc 09:03:00 21/11/2026" in after
    again = client.post(f"/staff/alerts/{alert_id}/ack", data={"csrf_token": csrf_of(page.text)})
    assert again.headers["location"] == "/staff/alerts?notice=already"


def test_roles(staff_app: StaffApp) -> None:
    alert_id = add_alert(staff_app)
    viewer = staff_app.client("10.0.0.8")
    staff_app.login(viewer, "xem")
    stations = viewer.get("/staff/stations")
    alerts = viewer.get("/staff/alerts")
    assert stations.status_code == alerts.status_code == 200
    assert "Gửi lời nhắn" not in stations.text and "Xác nhận đã xử lý" not in alerts.text
    token = csrf_of(alerts.text)  # the sign-out form's
    refused = viewer.post(f"/staff/alerts/{alert_id}/ack", data={"csrf_token": token})
    assert refused.status_code == 403 and "không được phép" in refused.text
    with staff_app.context.sessions() as db:
        assert db.get(Alert, alert_id).acknowledged_at is None
    command = viewer.post("/staff/stations/kiosk-1/command", data={"csrf_token": token, "cmd": "lock"})
    assert command.status_code == 403

    admin = staff_app.client("10.0.0.9")
    staff_app.login(admin, "admin")
    assert "Xác nhận đã xử lý" in admin.get("/staff/alerts").text


def test_not_signed_in_goes_to_the_login_page_and_back(staff_app: StaffApp) -> None:
    client = staff_app.client()
    response = client.get("/staff/alerts")
    assert response.status_code == 303
    assert response.headers["location"] == "/staff/login?next=/staff/alerts"
    assert staff_app.login(client, "xem", next_page="/staff/alerts").headers["location"] == "/staff/alerts"
    # Never to another site after login.
    other = staff_app.client("10.0.0.10")
    assert staff_app.login(other, "xem", next_page="//evil.example/").headers["location"] == "/staff/stations"


def test_logout_ends_the_session(staff_app: StaffApp) -> None:
    client = staff_app.client()
    staff_app.login(client, "thuthu")
    token = client.cookies.get(SESSION_COOKIE)
    page = client.get("/staff/stations")
    response = client.post("/staff/logout", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 303 and response.headers["location"] == "/staff/login?bye=1"
    assert "Bạn đã đăng xuất." in client.get("/staff/login?bye=1").text
    with staff_app.context.sessions() as db:
        assert db.scalar(select(func.count()).select_from(StaffSession)) == 0
    # The old cookie, replayed, opens nothing.
    replay = staff_app.client()
    replay.cookies.set(SESSION_COOKIE, token, path="/staff")
    assert replay.get("/staff/stations").status_code == 303


def test_sessions_expire(staff_app: StaffApp) -> None:
    client = staff_app.client()
    staff_app.login(client, "thuthu")
    staff_app.clock.now += dt.timedelta(hours=11, minutes=59)
    assert client.get("/staff/stations").status_code == 200
    staff_app.clock.now += dt.timedelta(minutes=2)
    expired = client.get("/staff/stations")
    assert expired.status_code == 303 and "expired=1" in expired.headers["location"]
    login = client.get(expired.headers["location"])
    assert "Phiên làm việc đã hết hạn" in login.text


def test_junk_cookies_and_fields_are_harmless(staff_app: StaffApp) -> None:
    client = staff_app.client()
    for junk in ("%ff%00'\"", "x" * 5000, ""):
        response = client.get("/staff/stations", headers={"cookie": f"{SESSION_COOKIE}={junk}"})
        assert response.status_code == 303
    response = staff_app.login(staff_app.client(), "thuthu", "p" * 100_000)
    assert response.status_code == 401
    assert staff_app.login(staff_app.client("10.0.0.11"), "Ä\x00'; drop table", "x").status_code == 401
    assert staff_app.client().get("/staff/nothing-here").status_code == 404


def test_language_switch(staff_app: StaffApp) -> None:
    client = staff_app.client()
    assert "Đăng nhập cho cán bộ thư viện" in client.get("/staff/login").text
    switch = client.get("/lang/en?next=/staff/login")
    assert switch.status_code == 303 and switch.headers["location"] == "/staff/login"
    english = client.get("/staff/login").text
    assert "Staff sign-in" in english and '<html lang="en">' in english
    assert client.get("/lang/en?next=https://evil.example/").headers["location"] == "/"
    assert client.get("/lang/xx?next=/staff/login").status_code == 303
    assert "Staff sign-in" in client.get("/staff/login").text  # an unknown language changes nothing
