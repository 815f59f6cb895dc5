"""API keys (stored hashed) and stream tickets (signed, short-lived)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from facilitair.protocol.events import utc_now
from facilitair.store.base import ApiKey, KeyStore

KEY_PREFIX = "fac_"


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    key_id: str


def hash_key(secret: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_key(
    store: KeyStore, name: str, tenant_id: str | None = None
) -> tuple[ApiKey, str]:
    """Make a key; the secret is returned once and only its hash is kept."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        key_id=uuid.uuid4().hex[:12],
        name=name,
        tenant_id=tenant_id or name,
        prefix=secret[:10],
        created_at=utc_now(),
    )
    await store.add_key(key, hash_key(secret))
    return key, secret


async def authenticate(store: KeyStore, secret: str) -> Principal | None:
    if not secret.startswith(KEY_PREFIX):
        return None
    key = await store.key_by_hash(hash_key(secret))
    if key is None or key.revoked_at is not None:
        return None
    return Principal(tenant_id=key.tenant_id, key_id=key.key_id)


class TicketError(Exception):
    pass


class Tickets:
    """Tokens that let a browser's EventSource open one stream of one tenant, for a short time."""

    def __init__(self, secret: str, ttl_s: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="stream-ticket")
        self.ttl_s = ttl_s

    def issue(self, stream_id: str, tenant_id: str) -> str:
        return self._serializer.dumps({"s": stream_id, "t": tenant_id})

    def verify(self, ticket: str) -> tuple[str, str]:
        """(stream_id, tenant_id) of a valid ticket."""
        try:
            data = self._serializer.loads(ticket, max_age=self.ttl_s)
        except SignatureExpired:
            raise TicketError("ticket expired") from None
        except BadSignature:
            raise TicketError("invalid ticket") from None
        return str(data["s"]), str(data["t"])
