"""Staff accounts, their server-side sessions and the login lockout: database logic only.

Passwords are hashed as readers' PINs are (`server.pins`: salted scrypt, its parameters
in the hash), so one verified implementation serves both. A session is a random token in
the browser's cookie; the database keeps only its SHA-256, so a stolen copy of the
database opens no session. Failed logins are counted per account and per client address:
5 within 15 minutes lock that key for 15 minutes, right password or not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from collections.abc import Iterable, Mapping
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from server.models import LoginThrottle, StaffRole, StaffSession, StaffUser
from server.pins import hash_pin, verify_pin

ROLES: tuple[str, ...] = tuple(role.value for role in StaffRole)
_RANK = {StaffRole.VIEWER: 0, StaffRole.LIBRARIAN: 1, StaffRole.ADMIN: 2}
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 256
MAX_FAILURES = 5
LOCK_FOR = dt.timedelta(minutes=15)
# Verified against when the account does not exist, so that a wrong name costs the same
# time as a wrong password and timing does not tell which names exist.
_DUMMY_HASH = hash_pin("not a password of anyone")


class AccountError(ValueError):
    """A refusal to show to the person who asked (English; the CLI prints it as is)."""


def may(role: str, needed: str) -> bool:
    """Whether `role` is at least `needed` (viewer < librarian < admin)."""
    return _RANK.get(StaffRole(role), -1) >= _RANK[StaffRole(needed)]


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise AccountError(f"user name {name!r} must be 2-64 characters of a-z, 0-9, '.', '_' "
                           "and '-', starting with a letter or digit")
    return name


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"a password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")
    return password


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


# --- accounts ------------------------------------------------------------------------------


def add_user(db: Session, name: str, role: str, password: str, now: dt.datetime) -> StaffUser:
    check_name(name)
    check_role(role)
    check_password(password)
    if db.scalar(select(StaffUser.id).where(StaffUser.name == name)) is not None:
        raise AccountError(f"a user named {name!r} already exists")
    user = StaffUser(name=name, role=role, password_hash=hash_pin(password), active=True,
                     created_at=now, password_changed_at=now)
    db.add(user)
    db.flush()
    return user


def get_user(db: Session, name: str) -> StaffUser:
    user = db.scalar(select(StaffUser).where(StaffUser.name == name))
    if user is None:
        raise AccountError(f"no user named {name!r}")
    return user


def set_password(db: Session, name: str, password: str, now: dt.datetime) -> StaffUser:
    """A new password also ends every session of the account: whoever knew the old one is out."""
    check_password(password)
    user = get_user(db, name)
    user.password_hash = hash_pin(password)
    user.password_changed_at = now
    db.execute(delete(StaffSession).where(StaffSession.user_id == user.id))
    db.execute(delete(LoginThrottle).where(LoginThrottle.key == f"user:{name}"))
    return user


def list_users(db: Session) -> list[StaffUser]:
    return list(db.scalars(select(StaffUser).order_by(StaffUser.name)))


# --- login and lockout ---------------------------------------------------------------------


@dataclass(frozen=True)
class Login:
    outcome: Literal["ok", "wrong", "locked"]
    user: StaffUser | None = None
    locked_until: dt.datetime | None = None


def throttle_keys(name: str, client: str | None) -> list[str]:
    keys = [f"user:{name[:64]}"]
    if client:
        keys.append(f"addr:{client[:64]}")
    return keys


def locked_until(db: Session, keys: Iterable[str], now: dt.datetime) -> dt.datetime | None:
    rows = db.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(list(keys)))).all()
    until = [row.locked_until for row in rows if row.locked_until and row.locked_until > now]
    return max(until) if until else None


def record_failure(db: Session, keys: Iterable[str] | Mapping[str, int],
                   now: dt.datetime) -> dt.datetime | None:
    """Count a failure against each key; the lock's end if this one locked a key. Staff
    keys lock after MAX_FAILURES; a mapping gives each key its own limit (the readers'
    sign-in of the catalogue shares this table)."""
    limits = keys if isinstance(keys, Mapping) else dict.fromkeys(keys, MAX_FAILURES)
    locked: dt.datetime | None = None
    for key, limit in limits.items():
        row = db.get(LoginThrottle, key)
        if row is None:
            row = LoginThrottle(key=key, failures=0, first_failure_at=now)
            db.add(row)
        elif now - row.first_failure_at >= LOCK_FOR:
            # Failures spread over more than the window do not add up to a lock.
            row.failures, row.first_failure_at, row.locked_until = 0, now, None
        row.failures += 1
        if row.failures >= limit:
            row.locked_until = now + LOCK_FOR
            row.failures, row.first_failure_at = 0, now
            locked = row.locked_until
    db.flush()
    return locked


def authenticate(db: Session, name: str, password: str, client: str | None,
                 now: dt.datetime) -> Login:
    keys = throttle_keys(name, client)
    until = locked_until(db, keys, now)
    if until is not None:
        return Login("locked", locked_until=until)
    user = db.scalar(select(StaffUser).where(StaffUser.name == name)) if name else None
    try:
        good = verify_pin(password, user.password_hash if user else _DUMMY_HASH) if password else False
    except ValueError:
        good = False  # a damaged stored hash: nobody gets in with it
    if user is None or not user.active or not good:
        until = record_failure(db, keys, now)
        return Login("locked", locked_until=until) if until else Login("wrong")
    # Only the account's count is cleared: a client that guessed one password right
    # keeps its record of the other accounts it tried.
    db.execute(delete(LoginThrottle).where(LoginThrottle.key == keys[0]))
    return Login("ok", user=user)


# --- sessions ------------------------------------------------------------------------------


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def open_session(db: Session, user: StaffUser, client: str | None, now: dt.datetime,
                 lifetime: dt.timedelta) -> tuple[str, StaffSession]:
    """A new session for `user`; returns the token for the cookie (never stored)."""
    db.execute(delete(StaffSession).where(StaffSession.expires_at <= now))
    token = secrets.token_urlsafe(32)
    row = StaffSession(token_hash=token_hash(token), user_id=user.id,
                       csrf_token=secrets.token_urlsafe(32), created_at=now,
                       expires_at=now + lifetime, client=(client or "")[:64] or None)
    db.add(row)
    db.flush()
    return token, row


def find_session(db: Session, token: str, now: dt.datetime) -> tuple[StaffSession, StaffUser] | None:
    if not token or len(token) > 128:
        return None
    row = db.scalar(select(StaffSession).where(StaffSession.token_hash == token_hash(token)))
    if row is None:
        return None
    user = db.get(StaffUser, row.user_id)
    if row.expires_at <= now or user is None or not user.active:
        db.delete(row)
        return None
    return row, user


def close_session(db: Session, token: str) -> None:
    db.execute(delete(StaffSession).where(StaffSession.token_hash == token_hash(token)))
