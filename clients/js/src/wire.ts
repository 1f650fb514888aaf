// Convene's wire types, generated from the convene-protocol crate. Do not edit: change the Rust
// types and run `CONVENE_WRITE_WIRE=1 cargo test -p convene-protocol` to write this file again.

/** The protocol version the server announces in `hello`. */
export const PROTOCOL_VERSION = 2;

/** Every message a client may send, tagged by `type`. */
export type ClientMessage = NodeRequest | SessionRequest | UserRequest;

/**
 * Lets a user waiting in the lobby in; hosts only.
 */
export type AdmitParticipant = { request_id?: RequestId | null, session_id: SessionId, user_id: UserId, };

/**
 * Archives or unarchives a conversation for the caller alone.
 */
export type ArchiveConversation = { request_id?: RequestId | null, conversation_id: ConversationId, archived: boolean, };

/**
 * A participant in a breakout room asks the hosts for help.
 */
export type AskForHelp = { request_id?: RequestId | null, session_id: SessionId, };

/**
 * Moves several people at once, all or nothing.
 */
export type AssignParticipants = { request_id?: RequestId | null, session_id: SessionId, assignments: Array<Assignment>, };

/**
 * One person placed in one room.
 */
export type Assignment = { user_id: UserId, room_id: RoomId, };

/**
 * How a breakout room is filled.
 */
export type AssignmentMode = "automatic" | "manual" | "self_select";

/**
 * Blocks a user: neither may open a conversation with the other or send in one.
 */
export type BlockUser = { request_id?: RequestId | null, user_id: UserId, };

/**
 * The options set with `set_breakout_options`.
 */
export type BreakoutOptions = { allow_self_select: boolean, allow_return_to_main: boolean, countdown_secs: number, };

/**
 * Everything about the breakouts, for hosts.
 */
export type BreakoutOverview = { 
/**
 * Whether the breakouts are open (people were sent to rooms and not yet all returned).
 */
open: boolean, options: BreakoutOptions, rooms: Array<BreakoutRoomView>, help_requests: Array<HelpRequest>, };

/**
 * A breakout room as hosts see it.
 */
export type BreakoutRoomView = { room_id: RoomId, name: string, max_participants: number, assignment_mode: AssignmentMode, 
/**
 * Everyone in the room, visiting hosts included.
 */
members: Array<UserId>, 
/**
 * Participants counted against `max_participants` (visiting hosts do not count).
 */
participants: number, ends_at?: string | null, closes_at?: string | null, };

/**
 * A host's message to every room at once.
 */
export type Broadcast = { request_id?: RequestId | null, session_id: SessionId, body: string, };

export type ChatMessage = { id: MessageId, session_id: SessionId, room_id: RoomId, seq: number, sender_id: UserId, 
/**
 * Empty once deleted.
 */
body: string, created_at: string, edited_at?: string | null, deleted_at?: string | null, };

/**
 * Chosen by the client per chat message; a retried send with the same id is not a new message.
 */
export type ClientMsgId = string;

/**
 * Closes the given rooms (all breakout rooms when none are given) after a countdown.
 */
export type CloseBreakoutRooms = { request_id?: RequestId | null, session_id: SessionId, room_ids?: Array<RoomId>, 
/**
 * Seconds before members are returned; the session's countdown (60 s) when absent.
 */
countdown_secs?: number | null, };

/**
 * One WebSocket connection: the node that accepted it and its number there. On the wire it is
 * a string, `"<node>-<number>"` (the node in 16 hex digits).
 */
export type ConnId = string;

/**
 * What tells two conversations of the same pair apart: an appointment, a session, a case.
 */
export type ConversationContext = { 
/**
 * What the context is, as the application names it (`appointment`, `session`, …).
 */
type: string, id: string, };

/**
 * Where a page of conversations ends: the next page starts below it.
 */
export type ConversationCursor = { last_activity_at: string, id: ConversationId, };

/**
 * A 1:1 conversation between two users (`conversations.id`).
 */
export type ConversationId = string;

/**
 * Where a device stopped reading a conversation.
 */
export type ConversationPosition = { conversation_id: ConversationId, last_seq: number, };

/**
 * One entry of the caller's conversation list.
 */
export type ConversationSummary = { conversation: ConversationView, other_user_id: UserId, 
/**
 * The sequence of its latest message (0 when none).
 */
last_seq: number, last_message?: DirectMessage | null, last_activity_at: string, 
/**
 * How far the caller has read.
 */
read_seq: number, 
/**
 * Messages after `read_seq`.
 */
unread: number, archived: boolean, };

/**
 * A conversation as both its members see it.
 */
export type ConversationView = { id: ConversationId, organization_id: OrgId, 
/**
 * Its two members, in a fixed order.
 */
members: [UserId, UserId], subject?: string | null, context?: ConversationContext | null, created_by: UserId, created_at: string, };

export type CountNotifications = { request_id?: RequestId | null, };

/**
 * Creates breakout rooms: `names` (one room each) or `count` rooms named "Room N".
 */
export type CreateBreakoutRooms = { request_id?: RequestId | null, session_id: SessionId, count?: number | null, names?: Array<string>, max_participants: number, assignment_mode: AssignmentMode, };

/**
 * Creates a session; only hosts (therapist, mentor, admin) may.
 */
export type CreateSession = { request_id?: RequestId | null, session_type: SessionType, 
/**
 * Unique across the server; generated when absent.
 */
room_name?: string | null, 
/**
 * Users invited to an appointment session; only they (and hosts) may join it.
 */
invitees?: Array<UserId>, 
/**
 * Whether joiners wait in a lobby; appointment sessions always have one.
 */
lobby_enabled: boolean, };

/**
 * Deletes an empty room.
 */
export type DeleteBreakoutRoom = { request_id?: RequestId | null, session_id: SessionId, room_id: RoomId, };

/**
 * Deletes (softly) one's own message.
 */
export type DeleteDirect = { request_id?: RequestId | null, conversation_id: ConversationId, message_id: DirectMessageId, };

/**
 * Deletes (softly) one's own message, or any message when the caller hosts the session.
 */
export type DeleteMessage = { request_id?: RequestId | null, session_id: SessionId, room_id: RoomId, message_id: MessageId, };

/**
 * Turns away a user waiting in the lobby; hosts only.
 */
export type DenyParticipant = { request_id?: RequestId | null, session_id: SessionId, user_id: UserId, };

/**
 * A message of a conversation. A deleted message keeps its place with an empty body.
 */
export type DirectMessage = { id: DirectMessageId, conversation_id: ConversationId, seq: number, sender_id: UserId, client_msg_id: ClientMsgId, body: string, created_at: string, edited_at?: string | null, deleted_at?: string | null, };

/**
 * A message of a 1:1 conversation.
 */
export type DirectMessageId = string;

/**
 * Says the caller started or stopped typing; ephemeral, never stored.
 */
export type DirectTyping = { request_id?: RequestId | null, conversation_id: ConversationId, active: boolean, };

/**
 * Replaces the body of one's own message.
 */
export type EditDirect = { request_id?: RequestId | null, conversation_id: ConversationId, message_id: DirectMessageId, body: string, };

/**
 * Replaces the body of one's own message.
 */
export type EditMessage = { request_id?: RequestId | null, session_id: SessionId, room_id: RoomId, message_id: MessageId, body: string, };

/**
 * Ends the session for everyone; hosts only.
 */
export type EndSession = { request_id?: RequestId | null, session_id: SessionId, };

/**
 * Why a request failed. Codes are stable across releases; new ones may be added.
 */
export type ErrorCode = "unauthorized" | "forbidden" | "not_found" | "invalid" | "too_large" | "rate_limited" | "conflict" | "gone" | "full" | "unavailable" | "internal";

/**
 * A failed request. `request_id` names it when the client gave one that could be read.
 */
export type ErrorReply = { request_id?: RequestId | null, code: ErrorCode, 
/**
 * For people reading logs; clients should branch on `code`.
 */
message: string, };

/**
 * Pages through a conversation: backwards from `before_seq`, forwards from `after_seq`, or the
 * latest messages.
 */
export type FetchDirectHistory = { request_id?: RequestId | null, conversation_id: ConversationId, before_seq?: number | null, after_seq?: number | null, 
/**
 * At most 100; 50 when absent.
 */
limit?: number | null, };

/**
 * Pages through a room's history: backwards from `before_seq`, or forwards from `after_seq`.
 * With neither, returns the latest messages.
 */
export type FetchHistory = { request_id?: RequestId | null, session_id: SessionId, room_id: RoomId, before_seq?: number | null, after_seq?: number | null, 
/**
 * At most 100; 50 when absent.
 */
limit?: number | null, };

/**
 * Pages through a room's current members, ordered by user id: the caller's own room, or any
 * room for hosts. The way to see everyone in a room too large to follow live.
 */
export type FetchRoster = { request_id?: RequestId | null, session_id: SessionId, room_id: RoomId, 
/**
 * Start after this user id (the previous page's `next`).
 */
after?: UserId | null, 
/**
 * At most 500; 200 when absent.
 */
limit?: number | null, };

/**
 * Says which conversation this device shows (none with `null`): new messages there make no
 * notification for the caller.
 */
export type FocusConversation = { request_id?: RequestId | null, conversation_id: ConversationId | null, };

/**
 * A roster the client holds, named when it joins again so that only what changed is sent.
 */
export type HeldRoster = { room_id: RoomId, version: RosterVersion, };

/**
 * Someone asking for help, and from where.
 */
export type HelpRequest = { user_id: UserId, room_id: RoomId, since: string, };

/**
 * One STUN or TURN server, shaped as the browser's `RTCIceServer`.
 */
export type IceServer = { urls: Array<string>, 
/**
 * For TURN: `expiry:user_id`, where expiry is in seconds since the Unix epoch.
 */
username?: string | null, 
/**
 * For TURN: base64(HMAC-SHA1(shared secret, username)).
 */
credential?: string | null, };

/**
 * The ICE servers a device gives its peer connections (`GET /v1/ice-servers`, and `joined`).
 */
export type IceServers = { ice_servers: Array<IceServer>, 
/**
 * When the TURN credentials stop being accepted; none without TURN. Fetch new ones before.
 */
expires_at?: string | null, };

/**
 * Joins a session (or rejoins it after a reconnect, with `resume`).
 */
export type JoinSession = { request_id?: RequestId | null, session_id: SessionId, 
/**
 * Rooms the client was in and the last sequence it saw in each; missed messages are replayed.
 */
resume?: Array<RoomCursor>, 
/**
 * Rosters the client holds (the version of each, from `joined`, `moved` or
 * `presence_changed`): a roster named here is answered with what changed since, when the
 * server can still tell.
 */
rosters?: Array<HeldRoster>, 
/**
 * This device takes part in its room's video: it is told which peer connections to open
 * and close (`peers_changed`), and the others' devices connect to it. A device that only
 * chats (or a load generator) leaves it out, and nobody tries to reach it.
 */
video?: boolean, };

export type JsonValue = number | string | boolean | Array<JsonValue> | { [key in string]: JsonValue } | null;

export type LeaveSession = { request_id?: RequestId | null, session_id: SessionId, };

/**
 * Lists the caller's conversations, newest activity first.
 */
export type ListConversations = { request_id?: RequestId | null, 
/**
 * The archived ones instead of the others.
 */
archived: boolean, before?: ConversationCursor | null, 
/**
 * At most 100; 30 when absent.
 */
limit?: number | null, };

/**
 * Lists the caller's notifications, newest first.
 */
export type ListNotifications = { request_id?: RequestId | null, unread_only: boolean, before_id?: NotificationId | null, 
/**
 * At most 100; 30 when absent.
 */
limit?: number | null, };

export type LobbyEntry = { user_id: UserId, role: Role, since: string, };

/**
 * Marks the conversation read up to `seq` for the caller (on all their devices).
 */
export type MarkConversationRead = { request_id?: RequestId | null, conversation_id: ConversationId, seq: number, };

/**
 * Marks some notifications read (`ids`), or all of them (`all`).
 */
export type MarkNotificationsRead = { request_id?: RequestId | null, ids?: Array<NotificationId>, all: boolean, };

/**
 * One person in a session, however many devices they joined from.
 */
export type MemberView = { user_id: UserId, session_role: SessionRole, role: Role, room_id: RoomId, devices: number, status: PresenceStatus, joined_at: string, };

/**
 * A chat message.
 */
export type MessageId = string;

/**
 * Moves one person; `from_room_id` is where the host believes they are, so that of two hosts
 * moving the same person at once, the second is told `conflict`.
 */
export type MoveParticipant = { request_id?: RequestId | null, session_id: SessionId, user_id: UserId, from_room_id: RoomId, to_room_id: RoomId, };

/**
 * Why someone changed rooms.
 */
export type MoveReason = "assigned" | "moved" | "selected" | "room_closed";

/**
 * The kinds the node answers itself, tagged as on the wire.
 */
export type NodeRequest = { "type": "ping" } & Ping | { "type": "create_session" } & CreateSession;

/**
 * A notification stored for a user until read.
 */
export type Notification = { id: NotificationId, type: string, title: string, message: string, 
/**
 * Whatever the sender attached (a JSON object).
 */
data: JsonValue, created_at: string, read_at?: string | null, };

/**
 * Unread notifications: in all, and by type.
 */
export type NotificationCounts = { total: number, by_type: { [key in string]: number }, };

/**
 * A notification (`notifications.id`): numbered in the order they were stored.
 */
export type NotificationId = number;

/**
 * Moves everyone as planned, all or nothing; optionally with a timer on every room.
 */
export type OpenBreakouts = { request_id?: RequestId | null, session_id: SessionId, timer_secs?: number | null, };

/**
 * Opens the caller's conversation with `user_id` (creating it the first time): one per pair
 * and organization, unless a subject or a context distinguishes it.
 */
export type OpenConversation = { request_id?: RequestId | null, user_id: UserId, subject?: string | null, context?: ConversationContext | null, };

/**
 * An organization (tenant), from `app_metadata.organization_id`.
 */
export type OrgId = string;

/**
 * Another person's device in the same room, to open a peer connection with.
 */
export type Peer = { user_id: UserId, device: ConnId, 
/**
 * Whether this device makes the offer. Of two devices, the one with the smaller id offers
 * (ids compare by node, then by number): both ends know it without asking each other.
 */
offer: boolean, };

/**
 * Another person's device whose peer connection must close.
 */
export type PeerGone = { user_id: UserId, device: ConnId, };

/**
 * Asks for a `pong`; lets a client measure round trips through the server.
 */
export type Ping = { request_id?: RequestId | null, };

/**
 * Prepares (or edits) the assignment that `open_breakouts` carries out.
 */
export type PlanBreakouts = { request_id?: RequestId | null, session_id: SessionId, 
/**
 * Manual choices, kept by the automatic split. A room id of the main room removes a choice.
 */
assignments?: Array<Assignment>, 
/**
 * Fill everyone present and not chosen manually with a balanced random split.
 */
automatic: boolean, 
/**
 * Pairs the automatic split keeps in one room (a mentor with their mentee).
 */
keep_together?: Array<[UserId, UserId]>, 
/**
 * Pairs the automatic split keeps apart.
 */
keep_apart?: Array<[UserId, UserId]>, 
/**
 * Start from an empty plan instead of editing the current one.
 */
reset: boolean, };

export type PresenceStatus = "active" | "away";

/**
 * Removes someone from the session (all their devices); hosts only. They may come back only
 * through the lobby, when a host admits them.
 */
export type RemoveParticipant = { request_id?: RequestId | null, session_id: SessionId, user_id: UserId, };

/**
 * Chosen by the client to match a reply (or an error) to the request that caused it.
 */
export type RequestId = string;

/**
 * A host marks a help request as handled.
 */
export type ResolveHelp = { request_id?: RequestId | null, session_id: SessionId, user_id: UserId, };

/**
 * Whether a resuming client's gap could be filled.
 */
export type ResumeOutcome = { room_id: RoomId, 
/**
 * `false` means messages were missed that will not be replayed: page `fetch_history` instead.
 */
recovered: boolean, 
/**
 * How many messages follow in `replay` frames.
 */
replayed: number, 
/**
 * The room's latest sequence number at the moment of joining.
 */
last_seq: number, };

/**
 * A user's role in the application, from `app_metadata.role`.
 */
export type Role = "patient" | "therapist" | "mentor" | "mentee" | "admin" | "support";

/**
 * How many members one room has.
 */
export type RoomCount = { room_id: RoomId, members: number, };

/**
 * Where a reconnecting client stopped reading a room.
 */
export type RoomCursor = { room_id: RoomId, 
/**
 * The last sequence number the client saw in that room.
 */
last_seq: number, };

/**
 * A room inside a session. The main room of a session has the session's own id.
 */
export type RoomId = string;

export type RoomView = { room_id: RoomId, name: string, 
/**
 * The sequence number of the room's latest message (0 when it has none): where the room's
 * history starts for someone arriving.
 */
last_seq: number, 
/**
 * Set for breakout rooms: their capacity.
 */
max_participants?: number | null, 
/**
 * Members in the room; `room_counts` follows it.
 */
members: number, };

/**
 * A room's roster: everyone in it, or what changed since a version the client holds.
 */
export type Roster = { room_id: RoomId, 
/**
 * The roster this brings the client to. Keep it with the room's members; name it in
 * `join_session`'s `rosters` after a reconnect to be sent only what changed.
 */
version: RosterVersion, 
/**
 * Set when this is a diff: `members` (arrived or changed) and `left` apply to the roster the
 * client holds at exactly this version. Absent when `members` is the whole roster shown.
 */
since?: RosterVersion | null, 
/**
 * A diff's arrivals and changes (replace by `user_id`), or every member shown.
 */
members?: Array<MemberView>, 
/**
 * Members who are no longer in the room (diffs only).
 */
left?: Array<UserId>, 
/**
 * How many members the room has at `version`.
 */
total: number, 
/**
 * False for a room too large to follow live: `members` then shows only the room's hosts,
 * no diffs follow for it, and `fetch_roster` pages everyone. A later roster with `live`
 * set (in full) starts following it again.
 */
live: boolean, };

/**
 * Names one state of a room's roster. `epoch` changes whenever the session is loaded anew (its
 * owner changed), so a version from before that never matches; `seq` grows with every change of
 * the session's presence.
 */
export type RosterVersion = { epoch: number, seq: number, };

/**
 * A participant picks a room (self-select), or returns to the main room, when allowed.
 */
export type SelectRoom = { request_id?: RequestId | null, session_id: SessionId, room_id: RoomId, };

/**
 * Sends a message: to a conversation, or to a user (opening the conversation on the first
 * message, as [`OpenConversation`] would). Idempotent by `client_msg_id`.
 */
export type SendDirect = { request_id?: RequestId | null, conversation_id?: ConversationId | null, 
/**
 * Instead of `conversation_id`: the other user, with the conversation's subject and context.
 */
to?: OpenConversation | null, client_msg_id: ClientMsgId, body: string, };

/**
 * Posts a chat message to a room the caller is in.
 */
export type SendMessage = { request_id?: RequestId | null, session_id: SessionId, room_id: RoomId, 
/**
 * Makes the send idempotent: a retry with the same id returns the first acknowledgement.
 */
client_msg_id: ClientMsgId, body: string, };

/**
 * Sends a [`Signal`] to a device of another member of the caller's room. `device` may be left
 * out when the member has a single device in the room.
 */
export type SendSignal = { request_id?: RequestId | null, session_id: SessionId, to_user_id: UserId, to_device?: ConnId | null, 
/**
 * Boxed: a candidate's fields would make every session request as large.
 */
signal: Signal, };

/**
 * Everything the server may send, tagged by `type`.
 */
export type ServerMessage = { "type": "hello", conn_id: ConnId, user_id: UserId, role: Role, protocol_version: number, 
/**
 * How often the server pings; a connection that answers nothing for the configured
 * timeout is closed.
 */
heartbeat_interval_ms: number, } | { "type": "pong", request_id?: RequestId | null, } | { "type": "ok", request_id?: RequestId | null, } | { "type": "session_created", request_id?: RequestId | null, session: SessionView, } | { "type": "joined", request_id?: RequestId | null, session: SessionView, you: MemberView, rosters: Array<Roster>, rooms: Array<RoomView>, 
/**
 * Only for hosts: who waits in the lobby.
 */
lobby?: Array<LobbyEntry>, 
/**
 * One entry per room named in the request's `resume`; replayed messages follow as `replay`.
 */
resume?: Array<ResumeOutcome>, 
/**
 * Only for hosts: the breakout rooms, who is where, timers and help requests.
 */
breakouts?: BreakoutOverview | null, 
/**
 * The STUN and TURN servers for this device's peer connections (as `GET /v1/ice-servers`).
 */
ice_servers?: IceServers | null, } | { "type": "lobby_waiting", request_id?: RequestId | null, session_id: SessionId, } | { "type": "lobby_entered", session_id: SessionId, entry: LobbyEntry, } | { "type": "lobby_left", session_id: SessionId, user_id: UserId, } | { "type": "denied", session_id: SessionId, } | { "type": "removed", session_id: SessionId, removed_by: UserId, } | { "type": "presence_changed", session_id: SessionId, rosters: Array<Roster>, } | { "type": "room_counts", session_id: SessionId, counts: Array<RoomCount>, } | { "type": "roster_page", request_id?: RequestId | null, session_id: SessionId, room_id: RoomId, members: Array<MemberView>, 
/**
 * Where the next page starts (its `after`), if there is one.
 */
next?: UserId | null, total: number, } | { "type": "left", request_id?: RequestId | null, session_id: SessionId, } | { "type": "session_ended", session_id: SessionId, ended_by: UserId, } | { "type": "session_interrupted", session_id: SessionId, } | { "type": "peers_changed", session_id: SessionId, 
/**
 * The room this device is in now.
 */
room_id: RoomId, open?: Array<Peer>, close?: Array<PeerGone>, } | { "type": "signal_received", session_id: SessionId, from_user_id: UserId, from_device: ConnId, signal: Signal, } | { "type": "session_updated", session: SessionView, } | { "type": "message", message: ChatMessage, } | { "type": "message_ack", request_id?: RequestId | null, client_msg_id: ClientMsgId, session_id: SessionId, room_id: RoomId, message_id: MessageId, seq: number, created_at: string, } | { "type": "message_edited", message: ChatMessage, } | { "type": "message_deleted", message: ChatMessage, deleted_by: UserId, } | { "type": "history", request_id?: RequestId | null, session_id: SessionId, room_id: RoomId, messages: Array<ChatMessage>, 
/**
 * Whether more messages lie beyond this page in the direction asked.
 */
has_more: boolean, } | { "type": "replay", session_id: SessionId, room_id: RoomId, messages: Array<ChatMessage>, } | { "type": "typing", session_id: SessionId, room_id: RoomId, user_id: UserId, active: boolean, } | { "type": "moved", session_id: SessionId, room: RoomView, reason: MoveReason, roster: Roster, } | { "type": "breakouts_changed", session_id: SessionId, open: boolean, rooms?: Array<BreakoutRoomView>, closed?: Array<RoomId>, } | { "type": "room_closing", session_id: SessionId, room_id: RoomId, seconds_left: number, closes_at: string, } | { "type": "breakout_plan", request_id?: RequestId | null, session_id: SessionId, assignments: Array<Assignment>, 
/**
 * Participants present whom the plan leaves in the main room.
 */
unassigned: Array<UserId>, } | { "type": "broadcast", session_id: SessionId, from: UserId, body: string, sent_at: string, } | { "type": "help_requested", session_id: SessionId, request: HelpRequest, } | { "type": "help_resolved", session_id: SessionId, user_id: UserId, } | { "type": "conversation", request_id?: RequestId | null, conversation: ConversationView, } | { "type": "conversation_started", conversation: ConversationView, } | { "type": "conversations", request_id?: RequestId | null, conversations: Array<ConversationSummary>, next?: ConversationCursor | null, } | { "type": "direct_ack", request_id?: RequestId | null, client_msg_id: ClientMsgId, conversation_id: ConversationId, message_id: DirectMessageId, seq: number, created_at: string, } | { "type": "direct_message", message: DirectMessage, } | { "type": "direct_message_edited", message: DirectMessage, } | { "type": "direct_message_deleted", message: DirectMessage, } | { "type": "direct_history", request_id?: RequestId | null, conversation_id: ConversationId, messages: Array<DirectMessage>, has_more: boolean, } | { "type": "conversations_synced", request_id?: RequestId | null, conversations: Array<SyncOutcome>, } | { "type": "conversation_gap", conversation_id: ConversationId, after_seq: number, last_seq: number, } | { "type": "conversation_read", conversation_id: ConversationId, user_id: UserId, read_seq: number, unread: number, } | { "type": "conversation_typing", conversation_id: ConversationId, user_id: UserId, active: boolean, } | { "type": "conversation_archived", conversation_id: ConversationId, archived: boolean, } | { "type": "notifications", request_id?: RequestId | null, notifications: Array<Notification>, counts: NotificationCounts, has_more: boolean, } | { "type": "notification", notification: Notification, } | { "type": "notifications_read", ids?: Array<NotificationId>, all: boolean, counts: NotificationCounts, } | { "type": "notification_counts", request_id?: RequestId | null, counts: NotificationCounts, } | { "type": "error" } & ErrorReply;

/**
 * A video session (`video_sessions.id`).
 */
export type SessionId = string;

/**
 * A request to one session, tagged by `type` like every client message.
 * [`SessionRequestKind`] names the kinds without their payloads.
 */
export type SessionRequest = { "type": "join_session" } & JoinSession | { "type": "leave_session" } & LeaveSession | { "type": "end_session" } & EndSession | { "type": "admit_participant" } & AdmitParticipant | { "type": "deny_participant" } & DenyParticipant | { "type": "set_role" } & SetRole | { "type": "remove_participant" } & RemoveParticipant | { "type": "set_lobby" } & SetLobby | { "type": "set_status" } & SetStatus | { "type": "send_message" } & SendMessage | { "type": "edit_message" } & EditMessage | { "type": "delete_message" } & DeleteMessage | { "type": "fetch_history" } & FetchHistory | { "type": "fetch_roster" } & FetchRoster | { "type": "typing" } & Typing | { "type": "create_breakout_rooms" } & CreateBreakoutRooms | { "type": "update_breakout_room" } & UpdateBreakoutRoom | { "type": "delete_breakout_room" } & DeleteBreakoutRoom | { "type": "set_breakout_options" } & SetBreakoutOptions | { "type": "plan_breakouts" } & PlanBreakouts | { "type": "open_breakouts" } & OpenBreakouts | { "type": "move_participant" } & MoveParticipant | { "type": "assign_participants" } & AssignParticipants | { "type": "swap_participants" } & SwapParticipants | { "type": "select_room" } & SelectRoom | { "type": "close_breakout_rooms" } & CloseBreakoutRooms | { "type": "broadcast" } & Broadcast | { "type": "ask_for_help" } & AskForHelp | { "type": "resolve_help" } & ResolveHelp | { "type": "send_signal" } & SendSignal;

/**
 * A member's role within one session (distinct from their application [`Role`]).
 */
export type SessionRole = "host" | "co_host" | "participant";

export type SessionStatus = "scheduled" | "active" | "ended";

export type SessionType = "appointment" | "instant" | "group";

export type SessionView = { id: SessionId, organization_id?: OrgId | null, session_type: SessionType, status: SessionStatus, room_name: string, created_by: UserId, lobby_enabled: boolean, 
/**
 * The main room's id (equal to the session id).
 */
main_room_id: RoomId, created_at: string, started_at?: string | null, ended_at?: string | null, };

/**
 * What participants may do on their own, and how long closing counts down.
 */
export type SetBreakoutOptions = { request_id?: RequestId | null, session_id: SessionId, allow_self_select?: boolean | null, allow_return_to_main?: boolean | null, countdown_secs?: number | null, };

/**
 * Turns the lobby on or off for later joiners; hosts only.
 */
export type SetLobby = { request_id?: RequestId | null, session_id: SessionId, enabled: boolean, };

/**
 * Makes a member of the session a co-host, or a co-host a participant again; hosts only. The
 * session's creator stays its host.
 */
export type SetRole = { request_id?: RequestId | null, session_id: SessionId, user_id: UserId, 
/**
 * `co_host` or `participant`.
 */
role: SessionRole, };

/**
 * Changes the caller's presence status in a session.
 */
export type SetStatus = { request_id?: RequestId | null, session_id: SessionId, status: PresenceStatus, };

/**
 * What one device tells another to set up their connection.
 */
export type Signal = { "type": "offer", sdp: string, } | { "type": "answer", sdp: string, } | { "type": "ice_candidate", candidate: string, sdp_mid?: string | null, sdp_m_line_index?: number | null, username_fragment?: string | null, };

/**
 * Exchanges the rooms of two people.
 */
export type SwapParticipants = { request_id?: RequestId | null, session_id: SessionId, user_a: UserId, user_b: UserId, };

/**
 * Says where this device is in each conversation it shows; it gets what it missed (as
 * `direct_message` frames, before the reply), or, past the resume window, a `gap` to page.
 */
export type SyncConversations = { request_id?: RequestId | null, positions: Array<ConversationPosition>, };

/**
 * What a `sync_conversations` found for one conversation.
 */
export type SyncOutcome = { conversation_id: ConversationId, 
/**
 * Messages sent again, just before the reply.
 */
replayed: number, 
/**
 * The conversation's latest sequence when the reply was made.
 */
last_seq: number, 
/**
 * More were missed than the resume window holds: none were replayed; page with
 * `fetch_direct_history` from the position given.
 */
gap: boolean, };

/**
 * Says the caller started or stopped typing; ephemeral, never stored. Repeats of the same
 * state are coalesced: the room hears a change, and a refresh of `active` at most every few
 * seconds.
 */
export type Typing = { request_id?: RequestId | null, session_id: SessionId, room_id: RoomId, active: boolean, };

export type UnblockUser = { request_id?: RequestId | null, user_id: UserId, };

/**
 * Renames a room or changes its capacity.
 */
export type UpdateBreakoutRoom = { request_id?: RequestId | null, session_id: SessionId, room_id: RoomId, name?: string | null, max_participants?: number | null, };

/**
 * A user, as named by the `sub` claim of their access token.
 */
export type UserId = string;

/**
 * A request about the caller's conversations or notifications, tagged by `type`.
 * [`UserRequestKind`] names the kinds without their payloads.
 */
export type UserRequest = { "type": "open_conversation" } & OpenConversation | { "type": "list_conversations" } & ListConversations | { "type": "send_direct" } & SendDirect | { "type": "edit_direct" } & EditDirect | { "type": "delete_direct" } & DeleteDirect | { "type": "fetch_direct_history" } & FetchDirectHistory | { "type": "sync_conversations" } & SyncConversations | { "type": "mark_conversation_read" } & MarkConversationRead | { "type": "direct_typing" } & DirectTyping | { "type": "archive_conversation" } & ArchiveConversation | { "type": "focus_conversation" } & FocusConversation | { "type": "block_user" } & BlockUser | { "type": "unblock_user" } & UnblockUser | { "type": "list_notifications" } & ListNotifications | { "type": "mark_notifications_read" } & MarkNotificationsRead | { "type": "count_notifications" } & CountNotifications;
