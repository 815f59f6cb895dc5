/** A small client for the Facilitair HTTP API. The key travels only in the X-API-Key header. */

import type {
  StreamStatus,
  TaskCreated,
  TaskDetail,
  TaskList,
  TaskRequest,
  Ticket,
} from "./protocol";

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** An error the UI can show as is: `message` is a whole sentence. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly retryAfterS: number | null;

  constructor(status: number, code: string, message: string, retryAfterS: number | null = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS;
  }
}

export function isAbort(error: unknown): boolean {
  return (
    typeof error === "object" &&
    error !== null &&
    (error as { name?: string }).name === "AbortError"
  );
}

function sentence(text: string): string {
  const trimmed = text.trim();
  if (!trimmed) return trimmed;
  const first = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

/** Turns a non-2xx response into an ApiError with a clear message. */
export async function errorFrom(response: Response): Promise<ApiError> {
  let code = "";
  let message = "";
  try {
    const body = (await response.json()) as { error?: { code?: string; message?: string } };
    code = body.error?.code ?? "";
    message = body.error?.message ?? "";
  } catch {
    // not JSON (a proxy's error page, say): fall back to the status
  }
  const retry = Number(response.headers.get("Retry-After"));
  const retryAfterS = Number.isFinite(retry) && retry > 0 ? retry : null;
  if (response.status === 401) {
    const detail = message || "invalid or revoked API key";
    return new ApiError(401, code || "unauthorized", sentence(detail));
  }
  if (response.status === 429) {
    const wait = retryAfterS ? ` Try again in ${Math.ceil(retryAfterS)} s.` : "";
    return new ApiError(429, code || "rate_limited", `${sentence(message || "too many requests")}${wait}`, retryAfterS);
  }
  const fallback = `The server answered ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
  return new ApiError(response.status, code || "http_error", sentence(message || fallback), retryAfterS);
}

export interface ApiOptions {
  baseUrl?: string;
  apiKey: string;
  fetch?: FetchLike;
}

export class Api {
  readonly baseUrl: string;
  private readonly apiKey: string;
  private readonly fetchImpl: FetchLike;

  constructor({ baseUrl = "", apiKey, fetch: fetchImpl }: ApiOptions) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.apiKey = apiKey;
    this.fetchImpl = fetchImpl ?? ((input, init) => globalThis.fetch(input, init));
  }

  url(path: string): string {
    return `${this.baseUrl}${path}`;
  }

  async request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (this.apiKey) headers["X-API-Key"] = this.apiKey;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response: Response;
    try {
      response = await this.fetchImpl(this.url(path), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        cache: "no-store",
      });
    } catch (error) {
      if (isAbort(error)) throw error;
      throw new ApiError(0, "network", "Cannot reach the Facilitair server. Check your connection.");
    }
    if (!response.ok) throw await errorFrom(response);
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }

  createTask(request: TaskRequest, signal?: AbortSignal): Promise<TaskCreated> {
    return this.request("POST", "/api/stream/task", request, signal);
  }

  ticket(streamId: string, signal?: AbortSignal): Promise<Ticket> {
    return this.request("POST", `/api/stream/${encodeURIComponent(streamId)}/ticket`, undefined, signal);
  }

  status(streamId: string, signal?: AbortSignal): Promise<StreamStatus> {
    return this.request("GET", `/api/stream/status/${encodeURIComponent(streamId)}`, undefined, signal);
  }

  cancel(streamId: string, signal?: AbortSignal): Promise<StreamStatus> {
    return this.request("POST", `/api/stream/${encodeURIComponent(streamId)}/cancel`, undefined, signal);
  }

  tasks(limit = 20, offset = 0, signal?: AbortSignal): Promise<TaskList> {
    return this.request("GET", `/api/v1/tasks?limit=${limit}&offset=${offset}`, undefined, signal);
  }

  task(taskId: string, signal?: AbortSignal): Promise<TaskDetail> {
    return this.request("GET", `/api/v1/tasks/${encodeURIComponent(taskId)}`, undefined, signal);
  }

  /** The events URL for an EventSource: a ticket instead of the key, and where to resume. */
  eventsUrl(streamId: string, ticket: string, lastEventId: number): string {
    const params = new URLSearchParams({ ticket });
    if (lastEventId > 0) params.set("last_event_id", String(lastEventId));
    return this.url(`/api/stream/events/${encodeURIComponent(streamId)}?${params.toString()}`);
  }
}
