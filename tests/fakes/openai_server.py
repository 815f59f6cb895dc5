"""Scripted fake of the OpenAI chat-completions API, served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fakes.loop_server import LoopServer

__all__ = ["DefaultReply", "FakeOpenAI", "RecordedRequest", "Reply"]

log = logging.getLogger(__name__)

_TOKEN_RE = re.compile(r"\S+\s*|\s+")
_READ_SIZE = 65536


@dataclass
class Reply:
    """One scripted response; `tokens` overrides the default whitespace split of `text`."""

    text: str = ""
    tokens: list[str] | None = None
    delay_s: float = 0.0
    first_token_delay_s: float = 0.0
    status: int = 200
    hang: bool = False
    drop_after: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str = "stop"

    def token_list(self) -> list[str]:
        """The chunks to stream."""
        return list(self.tokens) if self.tokens is not None else _TOKEN_RE.findall(self.text)


@dataclass
class RecordedRequest:
    """A chat-completions request as seen by the fake, with server-side timings."""

    role: str
    model: str
    body: dict[str, Any]
    received_at: float
    first_token_at: float | None = None
    last_token_at: float | None = None
    finished_at: float | None = None
    disconnected_at: float | None = None
    status: int = 200

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The request's messages."""
        return _messages(self.body)

    @property
    def system(self) -> str:
        """Content of the first system message, "" if none."""
        return _system_text(self.body)


DefaultReply = Reply | str | Callable[[RecordedRequest], Reply | str]


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    raw = body.get("messages")
    if not isinstance(raw, list):
        return []
    return [m for m in raw if isinstance(m, dict)]


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _system_text(body: dict[str, Any]) -> str:
    for message in _messages(body):
        if message.get("role") == "system":
            return _content_text(message.get("content"))
    return ""


def _bag_of_words(text: str, dimension: int = 64) -> list[float]:
    """A deterministic stand-in embedding: hashed word counts (equal texts, equal vectors)."""
    vector = [0.0] * dimension
    for word in re.findall(r"\w+", text.lower()):
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % dimension] += 1.0
    return vector


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _sse(obj: Any) -> bytes:
    return _chunk(b"data: " + _json_bytes(obj) + b"\n\n")


def _head(status: int, headers: dict[str, str]) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [f"HTTP/1.1 {status} {phrase}"]
    lines += [f"{k}: {v}" for k, v in {**headers, "Connection": "close"}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> bytes:
    payload = _json_bytes(obj)
    head = {"Content-Type": "application/json", "Content-Length": str(len(payload))}
    return _head(status, {**head, **(headers or {})}) + payload


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind, code = "invalid_request_error", None
    if status == 401:
        code = "invalid_api_key"
    elif status == 429:
        kind, code = "requests", "rate_limit_exceeded"
    elif status >= 500:
        kind = "server_error"
    return {"error": {"message": message, "type": kind, "code": code}}


class _Conn:
    """One client connection plus a task that notices when the client goes away."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.record: RecordedRequest | None = None
        self.gone = asyncio.Event()
        self._closing = False
        self._watcher: asyncio.Task[None] | None = None

    async def read_request(self) -> tuple[str, str, bytes] | None:
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            body = await self.reader.readexactly(length) if length > 0 else b""
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, OSError):
            return None
        return method.upper(), target.split("?", 1)[0], body

    def watch(self) -> None:
        self._watcher = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        with contextlib.suppress(OSError):
            while await self.reader.read(_READ_SIZE):
                pass
        self._mark_gone()

    def _mark_gone(self) -> None:
        if self._closing or self.gone.is_set():
            return
        self.gone.set()
        rec = self.record
        if rec is not None and rec.finished_at is None and rec.disconnected_at is None:
            rec.disconnected_at = time.monotonic()

    async def send(self, data: bytes) -> bool:
        """Write and drain; False if the client is gone."""
        if self.gone.is_set():
            return False
        try:
            self.writer.write(data)
            await self.writer.drain()
        except OSError:
            self._mark_gone()
        return not self.gone.is_set()

    async def finish(self, data: bytes) -> None:
        """Send the end of the response; finished_at is set before the client can see it."""
        rec = self.record
        if rec is not None:
            rec.finished_at = time.monotonic()
        if not await self.send(data) and rec is not None:
            rec.finished_at = None
            rec.disconnected_at = rec.disconnected_at or time.monotonic()

    async def pause(self, seconds: float) -> bool:
        """Sleep unless the client disconnects first; False if it did."""
        if seconds > 0 and not self.gone.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gone.wait(), seconds)
        return not self.gone.is_set()

    async def _stop_watching(self) -> None:
        self._closing = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    async def abort(self) -> None:
        """Close the socket without finishing the response."""
        await self._stop_watching()
        self.writer.transport.abort()

    async def close(self) -> None:
        await self._stop_watching()
        if not self.writer.is_closing():
            self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


# The role a request is for, read from its system prompt (the council's are member, judge, chair).
ROLE_PATTERN = r"\b(architect|coder|reviewer|documenter|member|judge|chair)\b"


class FakeOpenAI(LoopServer):
    """Fake OpenAI server running on its own event loop in a daemon thread."""

    thread_name = "fake-openai"

    def __init__(self, *, role_pattern: str = ROLE_PATTERN) -> None:
        super().__init__()
        self._role_re = re.compile(role_pattern, re.IGNORECASE)
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Reply | str]] = {}
        self._defaults: dict[str, DefaultReply] = {}
        self._records: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.embedding_inputs: list[str] = []

    @property
    def base_url(self) -> str:
        """Base URL for OpenAI clients, e.g. http://127.0.0.1:PORT/v1."""
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, role: str, *replies: Reply | str) -> None:
        """Queue replies for a role, served first-in first-out."""
        with self._lock:
            self._queues.setdefault(role.lower(), deque()).extend(replies)

    def set_default(self, role: str, reply: DefaultReply) -> None:
        """Reply used when the role's queue is empty; role "*" applies to every role."""
        with self._lock:
            self._defaults[role.lower()] = reply

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of recorded chat-completions requests."""
        with self._lock:
            return list(self._records)

    def requests_for(self, role: str) -> list[RecordedRequest]:
        """Recorded requests for one role."""
        role = role.lower()
        return [r for r in self.requests if r.role == role]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll predicate until true or timeout; returns its last value."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    async def wait_for_async(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> bool:
        """Like wait_for, without blocking the caller's event loop."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def reset(self) -> None:
        """Clear queues, defaults and records."""
        with self._lock:
            self._queues.clear()
            self._defaults.clear()
            self._records.clear()
            self.embedding_inputs.clear()

    def _role_of(self, body: dict[str, Any]) -> str:
        match = self._role_re.search(_system_text(body))
        if match is None:
            return "default"
        found = next((g for g in match.groups() if g), match.group(0))
        return found.lower()

    def _next_reply(self, rec: RecordedRequest) -> Reply:
        with self._lock:
            queue = self._queues.get(rec.role)
            if queue:
                item: DefaultReply = queue.popleft()
            else:
                item = self._defaults.get(rec.role, self._defaults.get("*", "OK"))
        if not isinstance(item, Reply | str):
            item = item(rec)
        return item if isinstance(item, Reply) else Reply(text=item)

    async def _on_stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        conn = _Conn(reader, writer)
        try:
            request = await conn.read_request()
            if request is not None:
                conn.watch()
                await self._route(conn, *request)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("fake OpenAI handler failed")
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await conn.close()
            if task is not None:
                self._tasks.discard(task)

    async def _route(self, conn: _Conn, method: str, path: str, raw: bytes) -> None:
        if method == "POST" and path == "/v1/chat/completions":
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                await conn.send(_json_response(400, _error_body(400, "Invalid JSON body")))
                return
            await self._chat(conn, body)
        elif method == "POST" and path == "/v1/embeddings":
            body = json.loads(raw or b"{}")
            texts = body.get("input", [])
            texts = [texts] if isinstance(texts, str) else list(texts)
            self.embedding_inputs.extend(texts)
            data = [
                {"object": "embedding", "index": i, "embedding": _bag_of_words(str(t))}
                for i, t in enumerate(texts)
            ]
            usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
            reply = {"object": "list", "data": data, "model": body.get("model"), "usage": usage}
            await conn.send(_json_response(200, reply))
        elif method == "GET" and path == "/v1/models":
            models = {"object": "list", "data": [{"id": "fake-model", "object": "model"}]}
            await conn.send(_json_response(200, models))
        else:
            message = f"Invalid URL ({method} {path})"
            await conn.send(_json_response(404, _error_body(404, message)))

    async def _chat(self, conn: _Conn, body: dict[str, Any]) -> None:
        model = body.get("model")
        rec = RecordedRequest(
            role=self._role_of(body),
            model=model if isinstance(model, str) else "",
            body=body,
            received_at=time.monotonic(),
        )
        conn.record = rec
        with self._lock:
            self._records.append(rec)
        reply = self._next_reply(rec)
        rec.status = reply.status
        if reply.hang:
            await conn.gone.wait()
        elif reply.status != 200:
            await self._error(conn, reply)
        elif body.get("stream") is True:
            await self._stream(conn, rec, reply)
        else:
            await self._complete(conn, rec, reply)

    async def _error(self, conn: _Conn, reply: Reply) -> None:
        if not await conn.pause(reply.first_token_delay_s):
            return
        headers = {"Retry-After": "0"} if reply.status == 429 else {}
        message = reply.text or f"Fake error {reply.status}"
        await conn.finish(_json_response(reply.status, _error_body(reply.status, message), headers))

    def _usage(self, rec: RecordedRequest, reply: Reply, tokens: list[str]) -> dict[str, int]:
        prompt = reply.prompt_tokens
        if prompt is None:
            chars = sum(len(_content_text(m.get("content"))) for m in rec.messages)
            prompt = max(1, chars // 4)
        completion = len(tokens) if reply.completion_tokens is None else reply.completion_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    async def _stream(self, conn: _Conn, rec: RecordedRequest, reply: Reply) -> None:
        tokens = reply.token_list()
        base = {
            "id": f"chatcmpl-fake-{next(self._ids)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": rec.model,
        }
        head = {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Transfer-Encoding": "chunked",
        }
        if not await conn.send(_head(200, head)):
            return
        if not await conn.pause(reply.first_token_delay_s):
            return
        for i, token in enumerate(tokens):
            if reply.drop_after is not None and i >= reply.drop_after:
                break
            if not await conn.pause(reply.delay_s):
                return
            delta = {"role": "assistant", "content": token} if i == 0 else {"content": token}
            choice = {"index": 0, "delta": delta, "finish_reason": None}
            if not await conn.send(_sse({**base, "choices": [choice]})):
                return
            rec.last_token_at = time.monotonic()
            if rec.first_token_at is None:
                rec.first_token_at = rec.last_token_at
        if reply.drop_after is not None:
            await conn.abort()
            return
        final = {"index": 0, "delta": {}, "finish_reason": reply.finish_reason}
        tail = _sse({**base, "choices": [final]})
        options = rec.body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            tail += _sse({**base, "choices": [], "usage": self._usage(rec, reply, tokens)})
        tail += _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
        await conn.finish(tail)

    async def _complete(self, conn: _Conn, rec: RecordedRequest, reply: Reply) -> None:
        tokens = reply.token_list()
        if not await conn.pause(reply.first_token_delay_s + reply.delay_s * len(tokens)):
            return
        if reply.drop_after is not None:
            await conn.abort()
            return
        message = {"role": "assistant", "content": "".join(tokens)}
        payload = {
            "id": f"chatcmpl-fake-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": rec.model,
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
            "usage": self._usage(rec, reply, tokens),
        }
        rec.first_token_at = rec.last_token_at = time.monotonic()
        await conn.finish(_json_response(200, payload))
