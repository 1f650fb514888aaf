-- 1:1 conversations, their messages, notifications, and the facts that decide who may talk to
-- whom (kept in sync by the application's backend over the service API).

-- Two users of one organization. `user_a` sorts before `user_b`, so a pair has one spelling;
-- a subject or a context (an appointment, a session) distinguishes further conversations of a
-- pair, '' meaning none.
CREATE TABLE conversations (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL,
    user_a           uuid NOT NULL,
    user_b           uuid NOT NULL,
    subject          text NOT NULL DEFAULT '',
    context_type     text NOT NULL DEFAULT '',
    context_id       text NOT NULL DEFAULT '',
    created_by       uuid NOT NULL,
    created_at       timestamptz NOT NULL,
    -- The conversation's sequence counter: advanced in the transaction that stores its messages,
    -- under this row's lock, so sequences are gapless and committed in order.
    last_seq         bigint NOT NULL DEFAULT 0,
    last_activity_at timestamptz NOT NULL,
    CHECK (user_a < user_b),
    UNIQUE (organization_id, user_a, user_b, subject, context_type, context_id)
);

-- Each member's own view: how far they have read, and whether they archived it.
CREATE TABLE conversation_members (
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL,
    read_seq        bigint NOT NULL DEFAULT 0,
    archived        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_by_user ON conversation_members (user_id);

CREATE TABLE messages (
    id              uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             bigint NOT NULL,
    sender_id       uuid NOT NULL,
    client_msg_id   text NOT NULL,
    body            text NOT NULL,
    created_at      timestamptz NOT NULL,
    edited_at       timestamptz,
    deleted_at      timestamptz,
    UNIQUE (conversation_id, seq),
    UNIQUE (conversation_id, sender_id, client_msg_id)
);

CREATE TABLE notifications (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    uuid NOT NULL,
    type       text NOT NULL,
    title      text NOT NULL,
    message    text NOT NULL,
    data       text NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL,
    read_at    timestamptz
);
CREATE INDEX notifications_by_user ON notifications (user_id, id);
CREATE INDEX notifications_unread ON notifications (user_id, type) WHERE read_at IS NULL;

-- Who a user is, for the rules of who may open a conversation with whom.
CREATE TABLE chat_profiles (
    user_id            uuid PRIMARY KEY,
    organization_id    uuid NOT NULL,
    kind               text NOT NULL,
    chat_enabled       boolean NOT NULL,
    profile_visibility text NOT NULL,
    updated_at         timestamptz NOT NULL
);

CREATE TABLE programme_members (
    programme_id    uuid NOT NULL,
    user_id         uuid NOT NULL,
    organization_id uuid NOT NULL,
    active          boolean NOT NULL,
    PRIMARY KEY (programme_id, user_id)
);
CREATE INDEX programme_members_by_user ON programme_members (user_id);

CREATE TABLE care_relationships (
    therapist_id    uuid NOT NULL,
    patient_id      uuid NOT NULL,
    organization_id uuid NOT NULL,
    PRIMARY KEY (therapist_id, patient_id)
);

CREATE TABLE user_blocks (
    blocker_id uuid NOT NULL,
    blocked_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);

-- Which conversation each connected device is looking at: a message there makes no
-- notification for that user. Rows of a node go when the node does.
CREATE TABLE conversation_focus (
    node_id         bigint NOT NULL,
    conn            bigint NOT NULL,
    user_id         uuid NOT NULL,
    conversation_id uuid NOT NULL,
    PRIMARY KEY (node_id, conn)
);
CREATE INDEX conversation_focus_by_user ON conversation_focus (user_id, conversation_id);
