-- Sessions, their participants and room chat. Table and column names follow the existing
-- Supabase schema where it has them (video_sessions, session_participants).

CREATE TABLE video_sessions (
    id              uuid PRIMARY KEY,
    organization_id uuid,
    session_type    text NOT NULL CHECK (session_type IN ('appointment', 'instant', 'group')),
    status          text NOT NULL CHECK (status IN ('scheduled', 'active', 'ended')),
    room_name       text NOT NULL UNIQUE,
    created_by      uuid NOT NULL,
    lobby_enabled   boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    started_at      timestamptz,
    ended_at        timestamptz,
    -- Set for instant sessions: never started by then, they expire.
    expires_at      timestamptz
);

CREATE INDEX video_sessions_expiry ON video_sessions (expires_at) WHERE status = 'scheduled';

CREATE TABLE session_participants (
    session_id uuid NOT NULL REFERENCES video_sessions (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL,
    role       text NOT NULL CHECK (role IN ('host', 'co_host', 'participant')),
    invited    boolean NOT NULL DEFAULT false,
    joined_at  timestamptz,
    left_at    timestamptz,
    PRIMARY KEY (session_id, user_id)
);

-- The per-room sequence counter. It advances in the same transaction as the messages it numbers,
-- so sequence numbers are gapless and survive restarts.
CREATE TABLE room_sequences (
    room_id    uuid PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES video_sessions (id) ON DELETE CASCADE,
    last_seq   bigint NOT NULL
);

CREATE TABLE room_messages (
    id            uuid PRIMARY KEY,
    session_id    uuid NOT NULL REFERENCES video_sessions (id) ON DELETE CASCADE,
    room_id       uuid NOT NULL,
    seq           bigint NOT NULL,
    sender_id     uuid NOT NULL,
    client_msg_id text NOT NULL,
    body          text NOT NULL,
    created_at    timestamptz NOT NULL,
    edited_at     timestamptz,
    deleted_at    timestamptz,
    deleted_by    uuid,
    UNIQUE (room_id, seq),
    UNIQUE (room_id, sender_id, client_msg_id)
);
