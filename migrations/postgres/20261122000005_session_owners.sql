-- Who runs each session's actor, and its fencing token. A node that takes a session over
-- increments `fence`; every transaction of the session's writes checks that the token it holds is
-- still the current one (and locks the row while it commits), so an owner that lost the session
-- (paused, partitioned, its lease expired) can never write after its successor took over.
CREATE TABLE session_owners (
    session_id uuid PRIMARY KEY REFERENCES video_sessions (id) ON DELETE CASCADE,
    fence      bigint NOT NULL,
    node       text NOT NULL,
    claimed_at timestamptz NOT NULL
);
