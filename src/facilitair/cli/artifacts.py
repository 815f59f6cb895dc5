"""Writing a result's files under a directory, and never outside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facilitair.agents.parsing import safe_relative_path


class UnsafeArtifacts(Exception):
    pass


def plan_writes(out: Path, result: dict[str, Any], *, force: bool) -> dict[Path, str]:
    """Every file to write (artifacts plus RESULT.md), checked before anything is written:
    paths must stay inside `out`, and existing files are only replaced with `force`."""
    root = out.resolve()
    writes: dict[Path, str] = {}
    for artifact in result.get("artifacts", []):
        relative = safe_relative_path(str(artifact.get("path", "")))
        target = (root / relative).resolve() if relative else None
        if target is None or not target.is_relative_to(root) or target == root:
            raise UnsafeArtifacts(f"refusing to write {artifact.get('path')!r}: outside {out}")
        writes[target] = str(artifact.get("content", ""))
    summary = (root / "RESULT.md").resolve()
    if not summary.is_relative_to(root):
        raise UnsafeArtifacts(f"refusing to write 'RESULT.md': it leads outside {out}")
    writes[summary] = str(result.get("content", ""))
    existing = sorted(str(p) for p in writes if p.exists())
    if existing and not force:
        raise UnsafeArtifacts(
            f"{len(existing)} file(s) already exist (e.g. {existing[0]}); use --force to replace"
        )
    return writes


def write_artifacts(out: Path, result: dict[str, Any], *, force: bool = False) -> list[Path]:
    writes = plan_writes(out, result, force=force)
    for path, content in writes.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return list(writes)
