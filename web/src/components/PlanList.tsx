import type { PlanItem } from "../protocol";
import type { Lane } from "../streamState";

/** The plan as the Architect laid it out, each turn marked pending, running or done. */
export function PlanList({ plan, lanes }: { plan: PlanItem[]; lanes: Lane[] }) {
  if (!plan.length) return null;
  const seen = new Map<string, number>();
  return (
    <details className="card plan">
      <summary>Plan ({plan.length} turns)</summary>
      <ol>
        {plan.map((item, index) => {
          // The same chunk id can appear twice (a revision): match the n-th appearance.
          const n = (seen.get(item.chunk_id) ?? 0) + 1;
          seen.set(item.chunk_id, n);
          const lane = lanes.find((l) => l.chunkId === item.chunk_id);
          const state = !lane ? "pending" : lane.iteration >= n && lane.done ? "done" : lane.iteration >= n ? "running" : "pending";
          return (
            <li key={`${item.chunk_id}-${index}`} className={`plan-item ${state}`}>
              <span className="badge">{state}</span> <strong>{item.chunk_id}</strong> · {item.role} · {item.description}{" "}
              <span className="muted">({item.model})</span>
            </li>
          );
        })}
      </ol>
    </details>
  );
}
