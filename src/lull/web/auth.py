"""Who is asking: the signed-in user (a signed session cookie), the projects it may see,
CSRF tokens for every form, and a brake on repeated failed sign-ins."""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
from starlette.requests import Request

from lull.errors import Forbidden, LullError, TooManyRequests
from lull.store.projects import now_ms
from lull.store.users import Membership, memberships, sessions_ended, user_exists


class SignedOut(LullError):
    """No one is signed in: pages send the browser to the sign-in page."""

    status = 401


@dataclass(frozen=True, slots=True)
class Access:
    """A signed-in user, the projects it may see and, on a project's page, that project."""

    user: str
    projects: list[Membership]
    project: Membership | None = None

    @property
    def admin(self) -> bool:
        return self.project is not None and self.project.role == "admin"


def signed_in(request: Request, con: duckdb.DuckDBPyConnection) -> Access:
    """The user of the session cookie (still an account), or SignedOut."""
    name = request.session.get("user")
    if not isinstance(name, str):
        raise SignedOut("sign in first")
    ended = sessions_ended(con, name)
    since = request.session.get("since")
    stale = ended is not None and not (isinstance(since, int) and since >= ended)
    if stale or not user_exists(con, name):
        request.session.clear()  # signed out (here or elsewhere), or the account is gone
        raise SignedOut("sign in first")
    return Access(name, memberships(con, name))


def on_project(
    request: Request, con: duckdb.DuckDBPyConnection, project: str, *, admin: bool = False
) -> Access:
    """The user's access to `project`: Forbidden if it is not one of its projects (the
    same answer whether or not the project exists), or if `admin` is needed and it is a
    viewer."""
    who = signed_in(request, con)
    found = next((m for m in who.projects if m.project == project), None)
    if found is None:
        raise Forbidden(f"your account has no access to project {project!r}")
    if admin and found.role != "admin":
        raise Forbidden(f"only an admin of project {project!r} may change its settings")
    return Access(who.user, who.projects, found)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use; every form carries it."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, sent: object) -> None:
    expected = request.session.get("csrf")
    if not (
        isinstance(expected, str) and isinstance(sent, str) and hmac.compare_digest(expected, sent)
    ):
        raise Forbidden("the form has expired or did not come from this site: reload and retry")


def start_session(request: Request, user: str) -> None:
    """A fresh session for `user` (a new CSRF token too: nothing carries over)."""
    request.session.clear()
    request.session["user"] = user
    request.session["since"] = now_ms()
    request.session["csrf"] = secrets.token_urlsafe(32)


@dataclass
class Throttle:
    """At most `limit` failed sign-ins per key (an account name, or a client address)
    within `window_s`; beyond that, sign-ins for that key are refused until the oldest
    failure leaves the window."""

    limit: int
    window_s: float = 600.0
    clock: Callable[[], float] = time.monotonic
    failures: dict[str, list[float]] = field(default_factory=dict)

    def check(self, key: str) -> None:
        now = self.clock()
        recent = [t for t in self.failures.pop(key, []) if t > now - self.window_s]
        if recent:
            self.failures[key] = recent
        if len(recent) >= self.limit:
            wait = recent[-self.limit] + self.window_s - now
            raise TooManyRequests(
                f"too many failed sign-ins: try again in {max(1, round(wait / 60))} minute(s)"
            )

    def failed(self, key: str) -> None:
        self.failures.setdefault(key, []).append(self.clock())

    def succeeded(self, key: str) -> None:
        self.failures.pop(key, None)
