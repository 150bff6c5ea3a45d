"""Acknowledge links: signed, expiring, single-use tokens carried in every notification.

A token is ``<payload>.<signature>``, both base64url: the payload names the link (a random
id), the incident, the person it was sent to and when it expires; the signature is an
HMAC-SHA256 over the payload with the site's link secret (an environment variable named in
``alerting.links.secret_env``). A link only leads to the acknowledge page: the person still
signs in, and the acknowledgement is theirs. That it was used is stored
(``alert_link_uses``), so it works once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import orjson

from envmon.errors import EnvmonError

#: Tokens longer than this are refused before any work (hostile input).
MAX_TOKEN: Final = 600
#: Shortest accepted secret (bytes of its text).
MIN_SECRET: Final = 16


class LinkError(EnvmonError):
    """A link that is malformed, forged, expired or used (the message says which)."""


@dataclass(frozen=True, slots=True)
class Link:
    """What a valid token says."""

    link_id: str
    incident_id: str
    contact_id: str
    expires: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    """Makes and checks acknowledge tokens with one secret."""

    def __init__(self, secret: str, *, valid_for: timedelta) -> None:
        if len(secret.encode()) < MIN_SECRET:
            raise LinkError(f"the acknowledge-link secret must be at least {MIN_SECRET} bytes")
        self._key = hashlib.sha256(b"envmon-ack-link\x00" + secret.encode()).digest()
        self.valid_for = valid_for

    def make(self, incident_id: str, contact_id: str, now: datetime) -> str:
        """Return a new token for ``contact_id`` to acknowledge ``incident_id``."""
        expires = int((now + self.valid_for).timestamp())
        payload = orjson.dumps([secrets.token_hex(12), incident_id, contact_id, expires])
        body = _b64(payload)
        return f"{body}.{_b64(self._sign(body))}"

    def check(self, token: str, now: datetime) -> Link:
        """Return what ``token`` says; raise ``LinkError`` if it is not valid now."""
        if len(token) > MAX_TOKEN or token.count(".") != 1:
            raise LinkError("this acknowledge link is not valid (malformed)")
        body, signature = token.split(".")
        try:
            given = _unb64(signature)
            fields = orjson.loads(_unb64(body))
        except (binascii.Error, ValueError, orjson.JSONDecodeError):
            raise LinkError("this acknowledge link is not valid (malformed)") from None
        if not hmac.compare_digest(given, self._sign(body)):
            raise LinkError("this acknowledge link is not valid (its signature does not match)")
        if not (
            isinstance(fields, list)
            and len(fields) == 4
            and all(isinstance(field, str) for field in fields[:3])
            and isinstance(fields[3], int)
        ):
            raise LinkError("this acknowledge link is not valid (malformed)")
        expires = datetime.fromtimestamp(fields[3], UTC)
        if now >= expires:
            raise LinkError("this acknowledge link has expired: acknowledge on the incidents page")
        return Link(fields[0], fields[1], fields[2], expires)

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._key, body.encode(), hashlib.sha256).digest()
