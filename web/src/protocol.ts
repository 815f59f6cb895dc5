/** The wire contract of the Facilitair API (SPEC §4, §5), as the web client reads it. */

export const EVENT_NAMES = [
  "task_started",
  "task_progress",
  "chunk_started",
  "token_stream",
  "chunk_completed",
  "system_message",
  "task_completed",
  "task_error",
  "task_cancelled",
  "heartbeat",
] as const;

export type EventName = (typeof EVENT_NAMES)[number];

export const TERMINAL_EVENTS: ReadonlySet<string> = new Set([
  "task_completed",
  "task_error",
  "task_cancelled",
]);

/** Fields every event's `data` carries. */
export interface Envelope {
  stream_id: string;
  seq: number;
  timestamp: string;
}

export interface PlanItem {
  chunk_id: string;
  role: string;
  description: string;
  model: string;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
}

export interface Artifact {
  path: string;
  language: string;
  content: string;
}

export interface TaskMetrics {
  duration_s: number;
  cost_usd: number | null;
  prompt_tokens: number;
  completion_tokens: number;
  llm_calls: number;
  iterations: number;
  cached?: boolean;
  similarity?: number | null;
  saved_usd?: number | null;
  saved_s?: number | null;
  consensus?: Consensus | null;
}

/** The council's outcome: members by mean rank, Kendall's W, the most dissenting judge. */
export interface Consensus {
  ranking: { member: string; model: string; mean_rank: number }[];
  agreement: number | null;
  dissent: { member: string; reasons: Record<string, string> } | null;
}

export interface TaskStartedData extends Envelope {
  task: string;
  context: Record<string, unknown>;
  workflow: string;
  task_id: string;
}

export interface TaskProgressData extends Envelope {
  total_chunks: number;
  completed_chunks: number;
  estimated_time: number;
  estimated_cost: number | null;
  plan: PlanItem[];
}

export interface ChunkStartedData extends Envelope {
  chunk_id: string;
  chunk_number: number;
  role: string;
  agent: string;
  model: string;
  description: string;
  iteration?: number;
  attempt?: number;
  phase?: string;
  member?: string;
}

export interface TokenStreamData extends Envelope {
  chunk_id: string;
  tokens: string;
  role: string;
  agent: string;
  phase?: string;
  member?: string;
}

export interface ChunkCompletedData extends Envelope {
  chunk_id: string;
  chunk_number: number;
  role: string;
  agent: string;
  model: string;
  content: string;
  usage: Usage;
  cost_usd: number | null;
  duration_s: number;
  phase?: string;
  member?: string;
  /** The Tester's turn: what its pytest run counted. */
  tests?: TestCounts;
}

export interface TestCounts {
  passed: number;
  failed: number;
  errors: number;
  duration_s: number;
}

export interface SystemMessageData extends Envelope {
  message: string;
  level: "info" | "warning";
  kind: string;
  details?: Record<string, unknown>;
}

export interface TaskCompletedData extends Envelope {
  content: string;
  artifacts: Artifact[];
  metrics: TaskMetrics;
}

export interface TaskErrorData extends Envelope {
  error: string;
  code: string;
  retryable?: boolean;
  details?: Record<string, unknown> | null;
}

export interface TaskCancelledData extends Envelope {
  reason: string;
}

export interface EventDataMap {
  task_started: TaskStartedData;
  task_progress: TaskProgressData;
  chunk_started: ChunkStartedData;
  token_stream: TokenStreamData;
  chunk_completed: ChunkCompletedData;
  system_message: SystemMessageData;
  task_completed: TaskCompletedData;
  task_error: TaskErrorData;
  task_cancelled: TaskCancelledData;
  heartbeat: Envelope;
}

export type StreamEvent = {
  [K in EventName]: { event: K; data: EventDataMap[K] };
}[EventName];

// --- HTTP bodies ---------------------------------------------------------------------------

export interface TaskContext {
  preferred_language?: string;
  frameworks?: string[];
  team_size?: number | string;
  security_level?: string;
  compliance?: string[];
  existing_stack?: string[];
}

export type Verbosity = "filtered" | "full";
export type Workflow = "sequential" | "council";
export type CacheMode = "use" | "refresh" | "off";

export interface TaskRequest {
  task: string;
  context?: TaskContext;
  workflow?: Workflow;
  cache?: CacheMode;
  budget_usd?: number;
  models?: Record<string, string>;
  verbosity?: Verbosity;
}

export interface TaskCreated {
  stream_id: string;
  task_id: string;
  events_url: string;
  status_url: string;
}

export interface Ticket {
  ticket: string;
  expires_in: number;
  stream_id: string;
}

export type TaskStatus = "queued" | "running" | "completed" | "failed" | "cancelled";

export interface StreamStatus {
  stream_id: string;
  task_id: string;
  status: TaskStatus;
  last_event_id: number;
  completed_chunks: number;
  total_chunks: number;
  cost_usd: number | null;
  tokens: Record<string, number>;
  created_at: string;
  finished_at: string | null;
}

export interface TaskSummary {
  task_id: string;
  stream_id: string;
  status: TaskStatus;
  task: string;
  workflow: string;
  created_at: string;
  finished_at: string | null;
  cost_usd: number | null;
}

export interface TaskList {
  items: TaskSummary[];
  total: number;
  limit: number;
  offset: number;
}

export interface TaskResult {
  content: string;
  artifacts: Artifact[];
  metrics: TaskMetrics;
}

export interface TaskDetail extends TaskSummary {
  context: Record<string, unknown>;
  total_chunks: number;
  completed_chunks: number;
  tokens: Record<string, number>;
  result: TaskResult | null;
  error: { error: string; code: string; retryable?: boolean } | null;
  partial: Record<string, string> | null;
}
