"""The gateway's API-key check: cache, throttle, argon2 in threads.

``KeyChecker.check`` turns an ``Authorization`` header and a peer address into
``KeyOk(script, key_name, key_id)`` or ``KeyRefused(reason, retry_after)``. The
order of the steps is the point of this module; each step is cheaper than the
next and can end the check:

1. no header / not ``Bearer``                        -> missing / malformed
2. a cached key (blake2b of the whole key -> KeyOk)   -> ok, in microseconds
3. the same key already being verified               -> wait for that verdict
4. the client's failure bucket is empty              -> throttled (no parse, no argon2)
5. not ``sk_<12 alnum>_<43 base64url>``              -> malformed
6. the store has no such key id                      -> unknown (no argon2)
7. too many verifies already waiting                 -> throttled (overload)
8. argon2id verify in the checker's own threads      -> ok (cached) / wrong_secret

A key's cache entry dies at once with ``invalidate_key`` (key deleted) or
``invalidate_script`` (script undeployed or deleted). A verify that was running
while an invalidation happened is trusted only if the stored row is unchanged,
and is not cached. Mapping to HTTP (401 / 429, and 403 when the key's script is
not the URL's) is the gateway's, through ``KeyRefused.status``.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import inspect
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from daemon.keys.api_key import KEY_LENGTH, KeyRecord, parse_authorization, parse_key, verify_secret
from daemon.keys.throttle import FailureThrottle, client_bucket

__all__ = ["KeyCheck", "KeyChecker", "KeyLookup", "KeyOk", "KeyRefused", "Refusal", "VerifyFn"]

KeyLookup = Callable[[str], KeyRecord | Awaitable[KeyRecord | None] | None]
VerifyFn = Callable[[str, str], bool]  # (stored hash, secret) -> matches; blocking


class Refusal(enum.StrEnum):
    MISSING = "missing"
    MALFORMED = "malformed"
    UNKNOWN = "unknown"
    WRONG_SECRET = "wrong_secret"
    THROTTLED = "throttled"


# Unknown id and wrong secret read the same to the caller: the answer must not
# tell which half of a guessed key was right.
_MESSAGES = {
    Refusal.MISSING: "no API key: send the header 'Authorization: Bearer <key>'",
    Refusal.MALFORMED: "malformed API key: expected 'Authorization: Bearer sk_...'",
    Refusal.UNKNOWN: "invalid API key",
    Refusal.WRONG_SECRET: "invalid API key",
    Refusal.THROTTLED: "too many failed API key attempts from this address: retry later",
}


@dataclass(frozen=True, slots=True)
class KeyOk:
    script: str
    key_name: str
    key_id: str


@dataclass(frozen=True, slots=True)
class KeyRefused:
    reason: Refusal
    retry_after: float = 0.0  # seconds; > 0 only when throttled

    @property
    def status(self) -> int:
        return 429 if self.reason is Refusal.THROTTLED else 401

    @property
    def message(self) -> str:
        return _MESSAGES[self.reason]


KeyCheck = KeyOk | KeyRefused
_OVERLOAD_RETRY_S = 1.0  # when max_pending_verifies are already queued
_BEARER_LENGTH = len("Bearer ") + KEY_LENGTH


def _digest(token: str) -> bytes:
    # KeyChecker.cached digests the header's bytes the same way
    return hashlib.blake2b(token.encode("ascii"), digest_size=32).digest()


class KeyChecker:
    """Checks API keys for the gateway. Create and use it on one event loop.

    ``lookup(key_id)`` returns the stored ``KeyRecord`` or None; it may be a
    plain function (a primary-key read) or a coroutine function. ``verify`` is
    injected for tests; it always runs in the checker's own thread pool of
    ``max_concurrent_verifies`` threads, never on the loop.
    """

    def __init__(
        self,
        lookup: KeyLookup,
        *,
        verify: VerifyFn = verify_secret,
        max_concurrent_verifies: int = 2,
        max_pending_verifies: int = 64,
        throttle: FailureThrottle | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._lookup_fn = lookup
        self._verify = verify
        self._executor = ThreadPoolExecutor(
            max_workers=max_concurrent_verifies, thread_name_prefix="scriptd-argon2"
        )
        self._max_pending = max_pending_verifies
        self._throttle = throttle if throttle is not None else FailureThrottle()
        self._wall_clock = wall_clock
        self._cache: dict[bytes, KeyOk] = {}
        self._digest_of_key: dict[str, bytes] = {}
        self._keys_of_script: dict[str, set[str]] = {}
        self._inflight: dict[bytes, asyncio.Task[KeyCheck]] = {}
        self._epoch = 0  # bumped by every invalidation
        self._last_used: dict[str, float] = {}
        self.stats: Counter[str] = Counter()

    async def check(self, authorization: str | None, client: str | None) -> KeyCheck:
        """Check the ``Authorization`` header of a request from peer ``client``."""
        if authorization is None:
            return self._refuse(Refusal.MISSING)
        token = parse_authorization(authorization)
        if token is None:
            return self._refuse(Refusal.MALFORMED)
        # Only a token of the right length can be a key: anything else skips the
        # cache and the digest (and cannot hit a non-ASCII encode error).
        digest = _digest(token) if len(token) == KEY_LENGTH and token.isascii() else None
        if digest is not None:
            hit = self._cache.get(digest)
            if hit is not None:
                self.stats["cache_hit"] += 1
                self._last_used[hit.key_id] = self._wall_clock()
                return hit
        bucket = client_bucket(client)
        if digest is not None and digest in self._inflight:
            return await self._join(digest, bucket)
        wait = self._throttle.retry_after(bucket)
        if wait > 0:
            return self._refuse(Refusal.THROTTLED, wait)
        if digest is None:
            return self._fail(bucket, Refusal.MALFORMED)
        return await self._check_uncached(token, digest, bucket)

    def cached(self, authorization: bytes) -> KeyOk | None:
        """Step 2 alone, for the gateway's hot path: the cached verdict of a raw
        ``Authorization`` header of exactly ``Bearer <key>`` (what clients send), in
        one digest and one dict lookup, with no coroutine and no decoding. None: not
        cached, or written another way; then `check` decides. A hit needs the bytes
        after ``Bearer `` to be a verified key, so it answers as `check` would."""
        if len(authorization) != _BEARER_LENGTH or authorization[:7] != b"Bearer ":
            return None
        hit = self._cache.get(hashlib.blake2b(authorization[7:], digest_size=32).digest())
        if hit is not None:
            self.stats["cache_hit"] += 1
            self._last_used[hit.key_id] = self._wall_clock()
        return hit

    def invalidate_key(self, key_id: str) -> None:
        """Forget a key at once (it was deleted): its next use goes to the store."""
        self._epoch += 1
        digest = self._digest_of_key.pop(key_id, None)
        if digest is None:
            return
        ok = self._cache.pop(digest)
        keys = self._keys_of_script.get(ok.script)
        if keys is not None:
            keys.discard(key_id)
            if not keys:
                del self._keys_of_script[ok.script]

    def invalidate_script(self, script: str) -> None:
        """Forget every key of a script at once (undeployed, deleted)."""
        self._epoch += 1
        for key_id in self._keys_of_script.pop(script, set()):
            self._cache.pop(self._digest_of_key.pop(key_id))

    def take_last_used(self) -> dict[str, float]:
        """Key id -> wall-clock time of its latest successful use since the
        previous call. The store writes these in a batch, off the hot path."""
        used, self._last_used = self._last_used, {}
        return used

    def close(self) -> None:
        """Stop the verify threads; checks still waiting on them are cancelled."""
        for task in self._inflight.values():
            task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _check_uncached(self, token: str, digest: bytes, bucket: str) -> KeyCheck:
        parsed = parse_key(token)
        if parsed is None:
            return self._fail(bucket, Refusal.MALFORMED)
        epoch = self._epoch
        record = await self._lookup(parsed.key_id)
        if record is None:
            return self._fail(bucket, Refusal.UNKNOWN)
        if digest in self._inflight:  # started while the lookup awaited
            return await self._join(digest, bucket)
        if len(self._inflight) >= self._max_pending:
            self.stats["overloaded"] += 1
            return self._refuse(Refusal.THROTTLED, _OVERLOAD_RETRY_S)
        # Charge the bucket before argon2 (the verify refunds it on success), so a
        # burst of concurrent guesses from one client cannot all start a verify.
        self._throttle.record_failure(bucket)
        task = asyncio.ensure_future(
            self._verify_and_cache(digest, record, parsed.secret, epoch, bucket)
        )
        self._inflight[digest] = task
        task.add_done_callback(lambda _: self._inflight.pop(digest, None))
        outcome = await asyncio.shield(task)
        if isinstance(outcome, KeyRefused):
            self.stats[f"refused_{outcome.reason}"] += 1
        return outcome

    async def _join(self, digest: bytes, bucket: str) -> KeyCheck:
        """Share the verdict of a verify of the very same key already running."""
        self.stats["joined"] += 1
        outcome = await asyncio.shield(self._inflight[digest])
        if isinstance(outcome, KeyRefused):
            return self._fail(bucket, outcome.reason)
        self._last_used[outcome.key_id] = self._wall_clock()
        return outcome

    async def _verify_and_cache(
        self, digest: bytes, record: KeyRecord, secret: str, epoch: int, bucket: str
    ) -> KeyCheck:
        """Runs as a task of its own, so a caller that goes away (client
        disconnected) neither stops it nor loses the refund of its bucket."""
        self.stats["verify"] += 1
        loop = asyncio.get_running_loop()
        matches = await loop.run_in_executor(self._executor, self._verify, record.hash, secret)
        if not matches:
            return KeyRefused(Refusal.WRONG_SECRET)
        self._throttle.refund(bucket)
        ok = KeyOk(record.script, record.name, record.id)
        self._last_used[ok.key_id] = self._wall_clock()
        if self._epoch == epoch:
            self._remember(digest, ok)
            return ok
        # Something was invalidated while argon2 ran: the key may be gone.
        if await self._lookup(record.id) != record:
            return KeyRefused(Refusal.UNKNOWN)
        return ok

    def _remember(self, digest: bytes, ok: KeyOk) -> None:
        self._cache[digest] = ok
        self._digest_of_key[ok.key_id] = digest
        self._keys_of_script.setdefault(ok.script, set()).add(ok.key_id)

    async def _lookup(self, key_id: str) -> KeyRecord | None:
        found = self._lookup_fn(key_id)
        if inspect.isawaitable(found):
            return await found
        return found

    def _fail(self, bucket: str, reason: Refusal) -> KeyRefused:
        self._throttle.record_failure(bucket)
        return self._refuse(reason)

    def _refuse(self, reason: Refusal, retry_after: float = 0.0) -> KeyRefused:
        self.stats[f"refused_{reason}"] += 1
        return KeyRefused(reason, retry_after)
