"""API keys (stored hashed) and stream tickets (signed, short-lived)."""

from __future__ import annotations

import hashlib
import secrets
import time
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


class KeyStatus:
    """Whether keys are still active, for streams that outlive the request that opened them.

    Each answer is reused for `ttl_s`, so a thousand streams of one key cost one lookup per
    period, not a thousand."""

    def __init__(self, store: KeyStore, ttl_s: float) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._known: dict[str, tuple[float, bool]] = {}

    async def active(self, key_id: str, *, fresh: bool = False) -> bool:
        now = time.monotonic()
        known = self._known.get(key_id)
        if known is not None and not fresh and now - known[0] < self.ttl_s:
            return known[1]
        key = await self.store.key_by_id(key_id)
        active = key is not None and key.revoked_at is None
        self._known[key_id] = (now, active)
        if len(self._known) > 10_000:  # forget keys not asked about lately
            self._known = {k: v for k, v in self._known.items() if now - v[0] < self.ttl_s}
        return active


class TicketError(Exception):
    pass


class Tickets:
    """Tokens that let a browser's EventSource open one stream of one tenant, for a short time."""

    def __init__(self, secret: str, ttl_s: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="stream-ticket")
        self.ttl_s = ttl_s

    def issue(self, stream_id: str, principal: Principal) -> str:
        return self._serializer.dumps(
            {"s": stream_id, "t": principal.tenant_id, "k": principal.key_id}
        )

    def verify(self, ticket: str) -> tuple[str, Principal]:
        """The stream a valid ticket opens, and who it speaks for (the key that asked for it:
        revoking that key voids the ticket)."""
        try:
            data = self._serializer.loads(ticket, max_age=self.ttl_s)
        except SignatureExpired:
            raise TicketError("ticket expired") from None
        except BadSignature:
            raise TicketError("invalid ticket") from None
        if not isinstance(data, dict) or not {"s", "t", "k"} <= data.keys():
            raise TicketError("invalid ticket")
        return str(data["s"]), Principal(tenant_id=str(data["t"]), key_id=str(data["k"]))
