"""Every route of the OpenAPI document, fuzzed with a valid key (schemathesis): valid and
invalid parameters and bodies alike never get a 5xx, never hang, and no body carries a stack
trace."""

from __future__ import annotations

from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from fakes.openai_server import FakeOpenAI
from support import ServerThread, new_key, script_happy_path

BACKENDS = ("embedded", "scaleout")
EXAMPLES = 25  # per operation and mode: ~400 requests per backend
TRACE_MARKS = ("Traceback (most recent call last)", 'File "/', "Exception in ASGI")


def fuzz(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    headers: dict[str, str],
    seen: list[tuple[str, int]],
    bad: list[str],
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def probe(case: Any) -> None:
        # Problems are collected, not raised: a raise would make Hypothesis shrink, re-sending
        # the case many times over.
        described = (
            f"{case.method} {case.formatted_path} query={case.query} body={str(case.body)[:200]!r}"
        )
        try:
            response = case.call(base_url=base_url, headers=headers, timeout=20)
        except requests.RequestException as exc:  # a hang or a reset is a failure too
            bad.append(f"{described} -> {type(exc).__name__}: {exc}")
            return
        seen.append((operation.label, response.status_code))
        if response.status_code >= 500 or any(mark in response.text for mark in TRACE_MARKS):
            bad.append(f"{described} -> {response.status_code} {response.text[:300]!r}")

    try:
        probe()
    except Unsatisfiable:
        # Nothing about this operation can be invalid (no parameters, no body).
        assert mode == GenerationMode.NEGATIVE, operation.label


def test_no_route_answers_5xx_or_leaks_a_trace(make_server: Any, fake: FakeOpenAI) -> None:
    server: ServerThread = make_server(rate_limit_per_minute=100_000)
    key = new_key(server.settings, "fuzzer")
    script_happy_path(fake, chunks=1)
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12  # every route is in the document
    seen: list[tuple[str, int]] = []
    bad: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, server.base_url, {"X-API-Key": key}, seen, bad)
    assert len(seen) >= 300, len(seen)
    assert {label for label, _ in seen} == {op.label for op in operations}
    assert not bad, f"{len(bad)} bad answers:\n" + "\n".join(bad[:10])
