-- The audit trail: one row per host action (who, what, whom, when, under which request), written
-- in the same transaction as the change it records. `id` orders the rows and pages them.
CREATE TABLE session_audit_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id     uuid NOT NULL REFERENCES video_sessions (id) ON DELETE CASCADE,
    actor_id       uuid NOT NULL,
    action         text NOT NULL,
    target_user_id uuid,
    request_id     text,
    detail         jsonb NOT NULL,
    created_at     timestamptz NOT NULL
);

CREATE INDEX session_audit_log_session ON session_audit_log (session_id, id);
