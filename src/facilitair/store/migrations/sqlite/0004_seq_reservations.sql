-- The embedded event log shows an event to readers before it is stored. It first reserves a
-- block of seqs here, so a process that dies with events nobody stored leaves the highest seq
-- any reader could hold: whoever continues the stream starts after it, never reusing one.
CREATE TABLE IF NOT EXISTS seq_reservations (
    stream_id TEXT PRIMARY KEY,
    reserved INTEGER NOT NULL
);
