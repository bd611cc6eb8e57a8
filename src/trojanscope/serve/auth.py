"""Who is calling, and may they: API tokens (Bearer), password logins with a session cookie and
a CSRF token for forms, and the three roles. Tokens and session cookies are random (secrets)
and kept only as SHA-256 digests; passwords as argon2 hashes (argon2-cffi)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .db import ROLES, LoginSession, Token, User, now

SESSION_HOURS = 12


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def may(role: str, needed: str) -> bool:
    """Whether `role` has the rights of `needed` (viewer < reviewer < admin)."""
    return ROLES.index(role) >= ROLES.index(needed)


def hash_password(password: str) -> str:
    from argon2 import PasswordHasher

    return PasswordHasher().hash(password)


def check_password(user: User | None, password: str) -> bool:
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    if user is None or not user.password_hash:
        PasswordHasher().hash(password)  # the same time spent whether the user exists or not
        return False
    try:
        return PasswordHasher().verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def user_named(db: Session, name: str, role: str, password: str | None = None) -> User:
    """The user `name`, made with `role` when new (a password sets or replaces theirs)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    user = db.scalar(select(User).where(User.name == name))
    if user is None:
        user = User(name=name, role=role)
        db.add(user)
    if password is not None:
        user.password_hash = hash_password(password)
        if user.id is not None:  # a new password ends every session of the old one
            db.execute(delete(LoginSession).where(LoginSession.user_id == user.id))
    db.flush()
    return user


def revoke(db: Session, user: User) -> int:
    """Take back every token and session of `user`; how many."""
    tokens = db.execute(delete(Token).where(Token.user_id == user.id)).rowcount
    sessions = db.execute(delete(LoginSession).where(LoginSession.user_id == user.id)).rowcount
    return tokens + sessions


def new_token(db: Session, user: User) -> str:
    token = "ts_" + secrets.token_urlsafe(32)
    db.add(Token(digest=digest(token), user_id=user.id))
    return token


def token_user(db: Session, token: str) -> User | None:
    found = db.scalar(select(Token).where(Token.digest == digest(token)))
    return found.user if found else None


def new_session(db: Session, user: User) -> str:
    cookie = secrets.token_urlsafe(32)
    db.add(LoginSession(digest=digest(cookie), csrf=secrets.token_urlsafe(32), user_id=user.id,
                        expires=now() + dt.timedelta(hours=SESSION_HOURS)))
    return cookie


def session_of(db: Session, cookie: str | None) -> LoginSession | None:
    if not cookie:
        return None
    found = db.scalar(select(LoginSession).where(LoginSession.digest == digest(cookie)))
    if found is None or found.expires < now():
        return None
    return found


def csrf_ok(session: LoginSession, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf, given)
