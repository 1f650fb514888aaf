-- Breakout rooms and every change of room. Names follow the existing Supabase schema.
-- A session's main room is not a row here: its id is the session's id.

CREATE TABLE breakout_rooms (
    id               BLOB PRIMARY KEY,
    main_session_id  BLOB NOT NULL REFERENCES video_sessions (id) ON DELETE CASCADE,
    room_name        TEXT NOT NULL,
    max_participants INTEGER NOT NULL CHECK (max_participants > 0),
    assignment_mode  TEXT NOT NULL CHECK (assignment_mode IN ('automatic', 'manual', 'self_select')),
    status           TEXT NOT NULL CHECK (status IN ('active', 'closed')),
    created_by       BLOB NOT NULL,
    created_at       TEXT NOT NULL,
    closed_at        TEXT
);

CREATE INDEX breakout_rooms_session ON breakout_rooms (main_session_id, status);

-- One row per change of room: joining the session (from NULL), leaving it (to NULL), or moving.
-- Rows are written in the same transaction as the change they record; `id` orders them.
CREATE TABLE breakout_room_transitions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id      BLOB NOT NULL REFERENCES video_sessions (id) ON DELETE CASCADE,
    user_id         BLOB NOT NULL,
    from_room_id    BLOB,
    to_room_id      BLOB,
    transition_type TEXT NOT NULL CHECK (transition_type IN ('join', 'leave', 'move')),
    transitioned_at TEXT NOT NULL
);

CREATE INDEX breakout_room_transitions_session ON breakout_room_transitions (session_id, id);
