-- Sessions, their participants and room chat. Table and column names follow the existing
-- Supabase schema where it has them (video_sessions, session_participants). SQLite keeps uuids as
-- 16-byte BLOBs and times as RFC 3339 TEXT; otherwise the schema matches the Postgres one.

CREATE TABLE video_sessions (
    id              BLOB PRIMARY KEY,
    organization_id BLOB,
    session_type    text NOT NULL CHECK (session_type IN ('appointment', 'instant', 'group')),
    status          text NOT NULL CHECK (status IN ('scheduled', 'active', 'ended')),
    room_name       text NOT NULL UNIQUE,
    created_by      BLOB NOT NULL,
    lobby_enabled   INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    ended_at        TEXT,
    -- Set for instant sessions: never started by then, they expire.
    expires_at      TEXT
);

CREATE INDEX video_sessions_expiry ON video_sessions (expires_at);

CREATE TABLE session_participants (
    session_id BLOB NOT NULL REFERENCES video_sessions (id) ON DELETE CASCADE,
    user_id    BLOB NOT NULL,
    role       text NOT NULL CHECK (role IN ('host', 'co_host', 'participant')),
    invited    INTEGER NOT NULL DEFAULT 0,
    joined_at  TEXT,
    left_at    TEXT,
    PRIMARY KEY (session_id, user_id)
);

-- The per-room sequence counter. It advances in the same transaction as the messages it numbers,
-- so sequence numbers are gapless and survive restarts.
CREATE TABLE room_sequences (
    room_id    BLOB PRIMARY KEY,
    session_id BLOB NOT NULL REFERENCES video_sessions (id) ON DELETE CASCADE,
    last_seq   INTEGER NOT NULL
);

CREATE TABLE room_messages (
    id            BLOB PRIMARY KEY,
    session_id    BLOB NOT NULL REFERENCES video_sessions (id) ON DELETE CASCADE,
    room_id       BLOB NOT NULL,
    seq           INTEGER NOT NULL,
    sender_id     BLOB NOT NULL,
    client_msg_id text NOT NULL,
    body          text NOT NULL,
    created_at    TEXT NOT NULL,
    edited_at     TEXT,
    deleted_at    TEXT,
    deleted_by    BLOB,
    UNIQUE (room_id, seq),
    UNIQUE (room_id, sender_id, client_msg_id)
);
