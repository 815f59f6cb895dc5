-- pgvector: the one extension Facilitair needs. On a managed database (Supabase) where the
-- migrating role may not create extensions, enable `vector` once in the dashboard first.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY,
    stream_id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    record JSONB NOT NULL
);
CREATE INDEX tasks_by_tenant ON tasks (tenant_id, created_at DESC);
CREATE INDEX tasks_by_status ON tasks (status);
-- `data` is the event's JSON exactly as it was first sent (TEXT, not JSONB, which would
-- reorder its keys): a replay is byte for byte the live stream.
CREATE TABLE events (
    stream_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (stream_id, seq)
);
-- `embedding` has no fixed dimension, so embedders of any size share the table; each size
-- gets its own HNSW index over `embedding::vector(N)` (see PgVectorIndex), and the partition
-- key always names the embedder, so vectors of two models are never compared.
CREATE TABLE cache_entries (
    entry_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    partition TEXT NOT NULL,
    task TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    embedding vector NOT NULL,
    body TEXT NOT NULL,
    cost_usd DOUBLE PRECISION,
    duration_s DOUBLE PRECISION NOT NULL,
    created_at TEXT NOT NULL,
    last_hit_at TEXT,
    hit_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX cache_by_tenant ON cache_entries (tenant_id);
CREATE INDEX cache_by_partition ON cache_entries (partition);
CREATE INDEX cache_by_use ON cache_entries ((COALESCE(last_hit_at, created_at)));
CREATE INDEX cache_by_age ON cache_entries (created_at);
-- all-MiniLM-L6-v2, the default embedder, is 384-d.
CREATE INDEX cache_hnsw_384 ON cache_entries
    USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE dimension = 384;
CREATE TABLE cache_counters (
    tenant_id TEXT PRIMARY KEY,
    hits BIGINT NOT NULL DEFAULT 0,
    misses BIGINT NOT NULL DEFAULT 0,
    saved_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    saved_s DOUBLE PRECISION NOT NULL DEFAULT 0
);
