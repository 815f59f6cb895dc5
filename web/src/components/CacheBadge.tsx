import { formatSeconds, formatUsd } from "../format";
import type { CacheHit } from "../streamState";

/** "Cache hit · 94% match · saved $0.08, ~4.1 s". */
export function describeHit(hit: CacheHit): string {
  const parts = ["Cache hit"];
  if (hit.similarity !== null) parts.push(`${Math.round(hit.similarity * 100)}% match`);
  const saved: string[] = [];
  if (hit.savedUsd !== null) saved.push(formatUsd(hit.savedUsd));
  if (hit.savedS !== null) saved.push(`~${formatSeconds(hit.savedS)}`);
  if (saved.length) parts.push(`saved ${saved.join(", ")}`);
  return parts.join(" · ");
}

export function CacheBadge({ hit }: { hit: CacheHit }) {
  const text = hit.similarity !== null || hit.savedUsd !== null || hit.savedS !== null ? describeHit(hit) : hit.message ?? "Cache hit";
  return (
    <span className="badge cache" data-testid="cache-badge" title={hit.message ?? undefined}>
      <span aria-hidden="true">⚡ </span>
      {text}
    </span>
  );
}
