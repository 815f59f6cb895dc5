"""The exact half of a cache key: which tenant, workflow, context, models and embedder.

Context is normalised so that case, spacing, ordering and common aliases ("Python3" and
"python", "FastAPI" and "fastapi") never split a partition, while a different language or
framework always does. The task text is never part of this key: it is matched semantically.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from functools import cache
from importlib import resources
from typing import Any, Literal

Granularity = Literal["basic", "medium", "advanced"]


@cache
def _table() -> dict[str, Any]:
    text = resources.files("facilitair.cache").joinpath("aliases.toml").read_text("utf-8")
    return tomllib.loads(text)


@cache
def _aliases() -> dict[str, str]:
    table: dict[str, list[str]] = _table()["aliases"]
    return {alias: name for name, aliases in table.items() for alias in [name, *aliases]}


def team_size_band(value: object) -> str | None:
    """A team size as the cache keys it: a head count (or digits) by its band, a word by the
    band it names, any other label as itself (trimmed, lower-case)."""
    if value is None or isinstance(value, bool):
        return None
    sizes = _table()["team_size"]
    text = re.sub(r"\s+", " ", str(value).strip().lower())
    if isinstance(value, int) or text.isdigit():
        count = int(text)
        return next((b["name"] for b in sizes["bands"] if count <= b["up_to"]), "large")
    return str(sizes["words"].get(text, text))


def canonical(name: object) -> str:
    text = re.sub(r"\s+", " ", str(name).strip().lower())
    return _aliases().get(text, text)


def _names(values: object) -> list[str]:
    if not isinstance(values, list):
        values = [] if values in (None, "") else [values]
    return sorted({canonical(v) for v in values if str(v).strip()})


def normalise_context(
    context: dict[str, Any], granularity: Granularity = "medium"
) -> dict[str, Any]:
    """The parts of a task's context that change the answer, in one canonical form.

    basic: language and frameworks. medium (default): also team size (by band: see
    `team_size_band`). advanced: also security
    level, compliance and existing stack. Unknown keys never count."""
    language = context.get("preferred_language")
    normal: dict[str, Any] = {
        "language": canonical(language) if language else None,
        "frameworks": _names(context.get("frameworks")),
    }
    if granularity in ("medium", "advanced"):
        normal["team_size"] = team_size_band(context.get("team_size"))
    if granularity == "advanced":
        level = context.get("security_level")
        normal["security_level"] = canonical(level) if level else None
        normal["compliance"] = _names(context.get("compliance"))
        normal["existing_stack"] = _names(context.get("existing_stack"))
    return normal


def partition_key(
    *,
    tenant_id: str,
    workflow: str,
    context: dict[str, Any],
    models: dict[str, str],
    embedder_id: str,
    granularity: Granularity = "medium",
) -> str:
    parts = {
        "tenant": tenant_id,
        "workflow": workflow,
        "context": normalise_context(context, granularity),
        "models": dict(sorted(models.items())),
        "embedder": embedder_id,
        "granularity": granularity,
    }
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]
