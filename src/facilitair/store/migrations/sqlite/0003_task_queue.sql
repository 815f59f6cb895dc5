-- Tasks waiting for a worker: queued and owned by no process yet, oldest first.
CREATE INDEX tasks_waiting ON tasks (created_at) WHERE status = 'queued' AND owner IS NULL;
