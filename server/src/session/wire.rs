//! The explicit mapping from session events (domain) to protocol messages (wire).

use convene_protocol::{
    Assignment, BreakoutOptions, BreakoutOverview, BreakoutRoomView, ChatMessage, HelpRequest, LobbyEntry, MemberView,
    Peer, PeerGone, ResumeOutcome, RoomCount, RoomId, RoomView, Roster, RosterVersion, ServerMessage, SessionId,
    SessionView, UserId,
};

use super::state::{BreakoutView, Event, Help, Overview, RoomSummary, RosterView, Waiting};
use crate::presence::{Member, Shown};
use crate::store::{MessageRecord, SessionRecord};

/// The protocol message that tells `event` to its audience.
pub fn to_wire(session_id: SessionId, event: Event) -> ServerMessage {
    match event {
        Event::Joined { request_id, snapshot } => {
            let snapshot = *snapshot;
            ServerMessage::Joined {
                request_id,
                session: session_view(&snapshot.session),
                you: member_view(&snapshot.you),
                rosters: snapshot.rosters.into_iter().map(roster).collect(),
                rooms: snapshot.rooms.into_iter().map(room_view).collect(),
                lobby: snapshot.lobby.iter().map(lobby_entry).collect(),
                resume: snapshot
                    .resume
                    .into_iter()
                    .map(|r| ResumeOutcome {
                        room_id: r.room,
                        recovered: r.recovered,
                        replayed: u32::try_from(r.replayed).unwrap_or(u32::MAX),
                        last_seq: r.last_seq,
                    })
                    .collect(),
                breakouts: snapshot.breakouts.map(|o| Box::new(overview(&o))),
                // Minted by the actor as it answers: credentials are not the session's state.
                ice_servers: None,
            }
        }
        Event::Replayed { room, messages } => {
            ServerMessage::Replay { session_id, room_id: room, messages: messages.iter().map(chat_message).collect() }
        }
        Event::LobbyWaiting { request_id } => ServerMessage::LobbyWaiting { request_id, session_id },
        Event::LobbyEntered(waiting) => ServerMessage::LobbyEntered { session_id, entry: lobby_entry(&waiting) },
        Event::LobbyLeft { user } => ServerMessage::LobbyLeft { session_id, user_id: user },
        Event::Denied => ServerMessage::Denied { session_id },
        Event::Removed { by } => ServerMessage::Removed { session_id, removed_by: by },
        Event::PresenceChanged { rosters } => {
            ServerMessage::PresenceChanged { session_id, rosters: rosters.into_iter().map(roster).collect() }
        }
        Event::RoomCounts { counts } => ServerMessage::RoomCounts {
            session_id,
            counts: counts.into_iter().map(|(room_id, members)| RoomCount { room_id, members }).collect(),
        },
        Event::RosterPage { request_id, room, members, next, total } => ServerMessage::RosterPage {
            request_id,
            session_id,
            room_id: room,
            members: members.iter().map(member_view).collect(),
            next,
            total,
        },
        Event::Left { request_id } => ServerMessage::Left { request_id, session_id },
        Event::SessionEnded { by } => ServerMessage::SessionEnded { session_id, ended_by: by },
        Event::SessionUpdated(session) => ServerMessage::SessionUpdated { session: session_view(&session) },
        Event::MessagePosted(message) => ServerMessage::Message { message: chat_message(&message) },
        Event::MessageAcked { request_id, client_msg_id, message } => ServerMessage::MessageAck {
            request_id,
            client_msg_id,
            session_id: message.session_id,
            room_id: message.room_id,
            message_id: message.id,
            seq: message.seq,
            created_at: message.created_at,
        },
        Event::MessageEdited(message) => ServerMessage::MessageEdited { message: chat_message(&message) },
        Event::MessageDeleted { message, by } => {
            ServerMessage::MessageDeleted { message: chat_message(&message), deleted_by: by }
        }
        Event::Typed { room, user, active } => {
            ServerMessage::Typing { session_id, room_id: room, user_id: user, active }
        }
        Event::Moved { room, reason, roster: view } => {
            ServerMessage::Moved { session_id, room: room_view(room), reason, roster: roster(view) }
        }
        Event::BreakoutsChanged { open, rooms, closed } => ServerMessage::BreakoutsChanged {
            session_id,
            open,
            rooms: rooms.iter().map(breakout_room_view).collect(),
            closed,
        },
        Event::RoomClosing { room, seconds_left, closes_at } => {
            ServerMessage::RoomClosing { session_id, room_id: room, seconds_left, closes_at }
        }
        Event::PlanPrepared { request_id, assignments, unassigned } => ServerMessage::BreakoutPlan {
            request_id,
            session_id,
            assignments: assignments.into_iter().map(|(user_id, room_id)| Assignment { user_id, room_id }).collect(),
            unassigned,
        },
        Event::Broadcast { from, body, at } => ServerMessage::Broadcast { session_id, from, body, sent_at: at },
        Event::HelpRequested(help) => ServerMessage::HelpRequested { session_id, request: help_request(&help) },
        Event::HelpResolved { user } => ServerMessage::HelpResolved { session_id, user_id: user },
        Event::Succeeded { request_id } => ServerMessage::Ok { request_id },
        Event::PeersChanged { room, open, close } => ServerMessage::PeersChanged {
            session_id,
            room_id: room,
            open: open.into_iter().map(|(user_id, device, offer)| Peer { user_id, device, offer }).collect(),
            close: close.into_iter().map(|(user_id, device)| PeerGone { user_id, device }).collect(),
        },
        Event::SignalReceived { from_user, from_device, signal } => {
            ServerMessage::SignalReceived { session_id, from_user_id: from_user, from_device, signal }
        }
        Event::Failed { request_id, error } => ServerMessage::error(request_id, error.code(), error.to_string()),
    }
}

pub fn session_view(session: &SessionRecord) -> SessionView {
    SessionView {
        id: session.id,
        organization_id: session.organization_id,
        session_type: session.session_type,
        status: session.status,
        room_name: session.room_name.clone(),
        created_by: session.created_by,
        lobby_enabled: session.lobby_enabled,
        main_room_id: session.id.into(),
        created_at: session.created_at,
        started_at: session.started_at,
        ended_at: session.ended_at,
    }
}

pub fn member_view(member: &Member) -> MemberView {
    shown_view(member.user_id, member.room, member.shown())
}

fn shown_view(user_id: UserId, room_id: RoomId, shown: Shown) -> MemberView {
    MemberView {
        user_id,
        session_role: shown.session_role,
        role: shown.role,
        room_id,
        devices: shown.devices,
        status: shown.status,
        joined_at: shown.joined_at,
    }
}

fn roster(view: RosterView) -> Roster {
    let version = |seq| RosterVersion { epoch: view.epoch, seq };
    Roster {
        room_id: view.room,
        version: version(view.version),
        since: view.since.map(version),
        members: view.members.into_iter().map(|(user, shown)| shown_view(user, view.room, shown)).collect(),
        left: view.left,
        total: view.total,
        live: view.live,
    }
}

/// A stored message as clients see it: a deleted message keeps its place but not its body.
pub fn chat_message(message: &MessageRecord) -> ChatMessage {
    ChatMessage {
        id: message.id,
        session_id: message.session_id,
        room_id: message.room_id,
        seq: message.seq,
        sender_id: message.sender_id,
        body: if message.deleted_at.is_some() { String::new() } else { message.body.clone() },
        created_at: message.created_at,
        edited_at: message.edited_at,
        deleted_at: message.deleted_at,
    }
}

fn room_view(room: RoomSummary) -> RoomView {
    RoomView {
        room_id: room.id,
        name: room.name,
        last_seq: room.last_seq,
        max_participants: room.max_participants,
        members: room.members,
    }
}

fn breakout_room_view(view: &BreakoutView) -> BreakoutRoomView {
    BreakoutRoomView {
        room_id: view.id,
        name: view.breakout.name.clone(),
        max_participants: view.breakout.max_participants,
        assignment_mode: view.breakout.mode,
        members: view.members.clone(),
        participants: view.participants,
        ends_at: view.breakout.ends.map(|d| d.wall),
        closes_at: view.breakout.closes.map(|d| d.wall),
    }
}

fn overview(overview: &Overview) -> BreakoutOverview {
    BreakoutOverview {
        open: overview.open,
        options: BreakoutOptions {
            allow_self_select: overview.options.allow_self_select,
            allow_return_to_main: overview.options.allow_return_to_main,
            countdown_secs: u32::try_from(overview.options.countdown.as_secs()).unwrap_or(u32::MAX),
        },
        rooms: overview.rooms.iter().map(breakout_room_view).collect(),
        help_requests: overview.help.iter().map(help_request).collect(),
    }
}

fn help_request(help: &Help) -> HelpRequest {
    HelpRequest { user_id: help.user, room_id: help.room, since: help.since }
}

fn lobby_entry(waiting: &Waiting) -> LobbyEntry {
    LobbyEntry { user_id: waiting.user, role: waiting.role, since: waiting.since }
}
