-- The audit trail: one row per host action (who, what, whom, when, under which request), written
-- in the same transaction as the change it records. `id` orders the rows and pages them.
CREATE TABLE session_audit_log (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id     BLOB NOT NULL REFERENCES video_sessions (id) ON DELETE CASCADE,
    actor_id       BLOB NOT NULL,
    action         TEXT NOT NULL,
    target_user_id BLOB,
    request_id     TEXT,
    detail         TEXT NOT NULL,
    created_at     TEXT NOT NULL
);

CREATE INDEX session_audit_log_session ON session_audit_log (session_id, id);
