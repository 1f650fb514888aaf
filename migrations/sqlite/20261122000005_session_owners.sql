-- Who runs each session's actor, and its fencing token. A node that takes a session over
-- increments `fence`; every transaction of the session's writes checks that the token it holds is
-- still the current one, so an owner that lost the session can never write after its successor
-- took over.
CREATE TABLE session_owners (
    session_id BLOB PRIMARY KEY REFERENCES video_sessions (id) ON DELETE CASCADE,
    fence      INTEGER NOT NULL,
    node       TEXT NOT NULL,
    claimed_at TEXT NOT NULL
);
