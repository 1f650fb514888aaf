-- 1:1 conversations, their messages, notifications, and the facts that decide who may talk to
-- whom (kept in sync by the application's backend over the service API).

-- Two users of one organization. `user_a` sorts before `user_b`, so a pair has one spelling;
-- a subject or a context (an appointment, a session) distinguishes further conversations of a
-- pair, '' meaning none.
CREATE TABLE conversations (
    id               BLOB PRIMARY KEY,
    organization_id  BLOB NOT NULL,
    user_a           BLOB NOT NULL,
    user_b           BLOB NOT NULL,
    subject          text NOT NULL DEFAULT '',
    context_type     text NOT NULL DEFAULT '',
    context_id       text NOT NULL DEFAULT '',
    created_by       BLOB NOT NULL,
    created_at       TEXT NOT NULL,
    -- The conversation's sequence counter: advanced in the transaction that stores its messages,
    -- under this row's lock, so sequences are gapless and committed in order.
    last_seq         INTEGER NOT NULL DEFAULT 0,
    last_activity_at TEXT NOT NULL,
    CHECK (user_a < user_b),
    UNIQUE (organization_id, user_a, user_b, subject, context_type, context_id)
);

-- Each member's own view: how far they have read, and whether they archived it.
CREATE TABLE conversation_members (
    conversation_id BLOB NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         BLOB NOT NULL,
    read_seq        INTEGER NOT NULL DEFAULT 0,
    archived        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_by_user ON conversation_members (user_id);

CREATE TABLE messages (
    id              BLOB PRIMARY KEY,
    conversation_id BLOB NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    sender_id       BLOB NOT NULL,
    client_msg_id   text NOT NULL,
    body            text NOT NULL,
    created_at      TEXT NOT NULL,
    edited_at       TEXT,
    deleted_at      TEXT,
    UNIQUE (conversation_id, seq),
    UNIQUE (conversation_id, sender_id, client_msg_id)
);

CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    BLOB NOT NULL,
    type       text NOT NULL,
    title      text NOT NULL,
    message    text NOT NULL,
    data       text NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    read_at    TEXT
);
CREATE INDEX notifications_by_user ON notifications (user_id, id);
CREATE INDEX notifications_unread ON notifications (user_id, type) WHERE read_at IS NULL;

-- Who a user is, for the rules of who may open a conversation with whom.
CREATE TABLE chat_profiles (
    user_id            BLOB PRIMARY KEY,
    organization_id    BLOB NOT NULL,
    kind               text NOT NULL,
    chat_enabled       INTEGER NOT NULL,
    profile_visibility text NOT NULL,
    updated_at         TEXT NOT NULL
);

CREATE TABLE programme_members (
    programme_id    BLOB NOT NULL,
    user_id         BLOB NOT NULL,
    organization_id BLOB NOT NULL,
    active          INTEGER NOT NULL,
    PRIMARY KEY (programme_id, user_id)
);
CREATE INDEX programme_members_by_user ON programme_members (user_id);

CREATE TABLE care_relationships (
    therapist_id    BLOB NOT NULL,
    patient_id      BLOB NOT NULL,
    organization_id BLOB NOT NULL,
    PRIMARY KEY (therapist_id, patient_id)
);

CREATE TABLE user_blocks (
    blocker_id BLOB NOT NULL,
    blocked_id BLOB NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);

-- Which conversation each connected device is looking at: a message there makes no
-- notification for that user. Rows of a node go when the node does.
CREATE TABLE conversation_focus (
    node_id         INTEGER NOT NULL,
    conn            INTEGER NOT NULL,
    user_id         BLOB NOT NULL,
    conversation_id BLOB NOT NULL,
    PRIMARY KEY (node_id, conn)
);
CREATE INDEX conversation_focus_by_user ON conversation_focus (user_id, conversation_id);
