-- The schema as the first release created it (IF NOT EXISTS: databases made before migrations
-- existed are adopted as they are).
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    stream_id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_by_tenant ON tasks (tenant_id, created_at DESC);
CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks (status);
CREATE TABLE IF NOT EXISTS events (
    stream_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (stream_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cache_entries (
    entry_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    partition TEXT NOT NULL,
    task TEXT NOT NULL,
    vector BLOB NOT NULL,
    body TEXT NOT NULL,
    cost_usd REAL,
    duration_s REAL NOT NULL,
    created_at TEXT NOT NULL,
    last_hit_at TEXT,
    hit_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS cache_by_tenant ON cache_entries (tenant_id);
CREATE INDEX IF NOT EXISTS cache_by_use ON cache_entries (COALESCE(last_hit_at, created_at));
CREATE TABLE IF NOT EXISTS cache_counters (
    tenant_id TEXT PRIMARY KEY,
    hits INTEGER NOT NULL DEFAULT 0,
    misses INTEGER NOT NULL DEFAULT 0,
    saved_usd REAL NOT NULL DEFAULT 0,
    saved_s REAL NOT NULL DEFAULT 0
);
