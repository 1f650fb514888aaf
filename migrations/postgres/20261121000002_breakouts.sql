-- Breakout rooms and every change of room. Names follow the existing Supabase schema.
-- A session's main room is not a row here: its id is the session's id.

CREATE TABLE breakout_rooms (
    id               uuid PRIMARY KEY,
    main_session_id  uuid NOT NULL REFERENCES video_sessions (id) ON DELETE CASCADE,
    room_name        text NOT NULL,
    max_participants integer NOT NULL CHECK (max_participants > 0),
    assignment_mode  text NOT NULL CHECK (assignment_mode IN ('automatic', 'manual', 'self_select')),
    status           text NOT NULL CHECK (status IN ('active', 'closed')),
    created_by       uuid NOT NULL,
    created_at       timestamptz NOT NULL,
    closed_at        timestamptz
);

CREATE INDEX breakout_rooms_active ON breakout_rooms (main_session_id) WHERE status = 'active';

-- One row per change of room: joining the session (from NULL), leaving it (to NULL), or moving.
-- Rows are written in the same transaction as the change they record; `id` orders them.
CREATE TABLE breakout_room_transitions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id      uuid NOT NULL REFERENCES video_sessions (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL,
    from_room_id    uuid,
    to_room_id      uuid,
    transition_type text NOT NULL CHECK (transition_type IN ('join', 'leave', 'move')),
    transitioned_at timestamptz NOT NULL
);

CREATE INDEX breakout_room_transitions_session ON breakout_room_transitions (session_id, id);
