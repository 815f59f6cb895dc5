-- A running task is held by the process running it through a lease it renews; a task whose
-- lease has run out (its process died) is ended as interrupted by whichever process notices.
ALTER TABLE tasks ADD COLUMN owner TEXT;
ALTER TABLE tasks ADD COLUMN lease_expires_at TEXT;
CREATE INDEX tasks_by_lease ON tasks (status, lease_expires_at);
-- Tasks left unfinished before leases existed belong to no live process: expired already.
UPDATE tasks SET owner = 'before-leases', lease_expires_at = ''
    WHERE status IN ('queued', 'running');
