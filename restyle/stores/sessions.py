"""The dashboard's sessions, kept in the job store's database (same engine, a table of their own).

A browser signs in with a token once; from then on its cookie holds a random session id, never
the token. The row holds digests only (SHA-256 of the id and of the token), so a copy of the
database signs no one in. A session ends when it expires or when its browser signs out (the row
is deleted: the old cookie is worth nothing after), and with its token: a token taken out of the
service's configuration no longer resolves to anyone.

A session may also hold one notice: a refusal's reason the next page shows once (the dashboard's
redirects carry an error code, never text another site could choose).
"""

from __future__ import annotations

import hashlib
import secrets
import time

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import sessionmaker

from restyle.stores.tables import SessionRow


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


class SessionStore:
    """Sessions on the job store's engine (which made their table)."""

    def __init__(self, engine: Engine, clock=time.time):
        self._session = sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    def open(self, token: str, seconds: float) -> str:
        """A new session for ``token``, good for ``seconds``: its id, for the cookie. Expired sessions go."""
        now = self._clock()
        session_id = secrets.token_urlsafe(32)
        with self._session.begin() as db:
            db.execute(delete(SessionRow).where(SessionRow.expires_at < now))
            db.add(SessionRow(id=digest(session_id), token=digest(token), created_at=now, expires_at=now + seconds))
        return session_id

    def token_of(self, session_id: str) -> str | None:
        """The digest of the token behind a live session; None for an unknown, expired or closed one."""
        if not session_id or len(session_id) > 128:
            return None
        with self._session() as db:
            row = db.get(SessionRow, digest(session_id))
            return row.token if row is not None and row.expires_at > self._clock() else None

    def close(self, session_id: str) -> None:
        """Sign out: the session's row is deleted, so its cookie opens nothing, wherever a copy of it is."""
        if session_id:
            with self._session.begin() as db:
                db.execute(delete(SessionRow).where(SessionRow.id == digest(session_id)))

    def close_all(self, token: str) -> int:
        """End every session of a token (a token withdrawn, say); how many there were."""
        with self._session.begin() as db:
            return db.execute(delete(SessionRow).where(SessionRow.token == digest(token))).rowcount or 0

    def put_notice(self, session_id: str, text: str) -> None:
        with self._session.begin() as db:
            row = db.get(SessionRow, digest(session_id))
            if row is not None:
                row.notice = text[:500]

    def take_notice(self, session_id: str) -> str | None:
        """The session's notice, once: it is cleared as it is read."""
        with self._session.begin() as db:
            row = db.scalars(select(SessionRow).where(SessionRow.id == digest(session_id)).with_for_update()).first()
            if row is None or not row.notice:
                return None
            notice, row.notice = row.notice, None
            return notice
