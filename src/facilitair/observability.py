"""Prometheus metrics, in a registry owned by the app container (no process-global state)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.tasks_started = Counter("facilitair_tasks_started", "Tasks submitted", registry=r)
        self.tasks_finished = Counter(
            "facilitair_tasks_finished", "Tasks ended, by final status", ["status"], registry=r
        )
        self.events = Counter(
            "facilitair_events", "Events appended to streams, by name", ["event"], registry=r
        )
        self.llm_tokens = Counter(
            "facilitair_llm_tokens", "Tokens reported by providers", ["kind"], registry=r
        )
        self.subscribers = Gauge(
            "facilitair_stream_subscribers", "Open SSE and WebSocket subscriptions", registry=r
        )
        self.http_errors = Counter(
            "facilitair_http_errors", "Error responses, by status", ["status"], registry=r
        )
        self.cache_lookups = Counter(
            "facilitair_cache_lookups",
            "Semantic cache lookups, by outcome",
            ["outcome"],
            registry=r,
        )
        self.rate_limited = Counter(
            "facilitair_rate_limited", "Requests refused by the rate limit", registry=r
        )
        self._event_counters: dict[str, Any] = {}

    def count_event(self, name: str) -> None:
        """`events.labels(name).inc()`, with the labelled child kept: `labels()` costs a few
        µs (it validates and joins the label values), and this runs once per token."""
        counter = self._event_counters.get(name)
        if counter is None:
            counter = self._event_counters[name] = self.events.labels(name)
        counter.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
