//! Every request gets exactly one reply naming it, whatever state the connection is in, on one
//! node and from a node other than the session's owner.
//!
//! The kinds come from the protocol crate ([`SessionRequestKind`], [`UserRequestKind`] and the
//! two the node answers itself), and [`example`] matches on them exhaustively: a new kind does not compile until this
//! test sends it in every state.

use anyhow::{Context as _, Result, bail, ensure};
use convene_protocol::{
    ErrorCode, RequestId, Role, ServerMessage, SessionId, SessionRequestKind, UserId, UserRequestKind,
};
use serde_json::{Value, json};
use strum::IntoEnumIterator as _;
use uuid::Uuid;

use crate::common::{Backend, Client, TestServer, TestUser};
use crate::nodes::owner_and_other;
use crate::{across_nodes, on_both_backends};

on_both_backends!(every_request_gets_exactly_one_reply_in_every_state);
across_nodes!(every_request_gets_exactly_one_reply_in_every_state);

/// Where the probing connection stands when it sends the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    NeverJoined,
    InLobby,
    Denied,
    /// Its join was refused: the session belongs to another organization.
    Refused,
    Joined,
    JoinedAsHost,
    Left,
    /// A host removed it from the session.
    Removed,
    SessionEnded,
}

const STANDINGS: [Standing; 9] = [
    Standing::NeverJoined,
    Standing::InLobby,
    Standing::Denied,
    Standing::Refused,
    Standing::Joined,
    Standing::JoinedAsHost,
    Standing::Left,
    Standing::Removed,
    Standing::SessionEnded,
];

/// Every kind of request a client may send.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Ping,
    CreateSession,
    Session(SessionRequestKind),
    User(UserRequestKind),
}

impl Kind {
    fn all() -> impl Iterator<Item = Self> {
        [Self::Ping, Self::CreateSession]
            .into_iter()
            .chain(SessionRequestKind::iter().map(Self::Session))
            .chain(UserRequestKind::iter().map(Self::User))
    }

    fn tag(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::CreateSession => "create_session",
            Self::Session(kind) => kind.into(),
            Self::User(kind) => kind.into(),
        }
    }
}

/// The request a probe sends for each kind, naming the session, its main room and another
/// person in it.
fn example(kind: Kind, session: SessionId, other: UserId) -> Value {
    let room = session.0;
    let elsewhere = Uuid::new_v4();
    use SessionRequestKind as R;
    let body = match kind {
        Kind::Ping => json!({}),
        Kind::CreateSession => json!({"session_type": "group"}),
        Kind::Session(R::JoinSession)
        | Kind::Session(R::LeaveSession)
        | Kind::Session(R::EndSession)
        | Kind::Session(R::OpenBreakouts)
        | Kind::Session(R::AskForHelp) => json!({"session_id": session}),
        Kind::Session(R::AdmitParticipant)
        | Kind::Session(R::DenyParticipant)
        | Kind::Session(R::RemoveParticipant)
        | Kind::Session(R::ResolveHelp) => {
            json!({"session_id": session, "user_id": other})
        }
        Kind::Session(R::SetLobby) => json!({"session_id": session, "enabled": true}),
        Kind::Session(R::SetRole) => json!({"session_id": session, "user_id": other, "role": "co_host"}),
        Kind::Session(R::SetStatus) => json!({"session_id": session, "status": "away"}),
        Kind::Session(R::SendMessage) => {
            json!({"session_id": session, "room_id": room, "client_msg_id": "m1", "body": "hello"})
        }
        Kind::Session(R::EditMessage) => {
            json!({"session_id": session, "room_id": room, "message_id": Uuid::new_v4(), "body": "edited"})
        }
        Kind::Session(R::DeleteMessage) => {
            json!({"session_id": session, "room_id": room, "message_id": Uuid::new_v4()})
        }
        Kind::Session(R::FetchHistory) => json!({"session_id": session, "room_id": room}),
        Kind::Session(R::FetchRoster) => json!({"session_id": session, "room_id": room}),
        Kind::Session(R::Typing) => json!({"session_id": session, "room_id": room, "active": true}),
        Kind::Session(R::CreateBreakoutRooms) => json!({"session_id": session, "count": 2, "max_participants": 5}),
        Kind::Session(R::UpdateBreakoutRoom) => json!({"session_id": session, "room_id": elsewhere, "name": "x"}),
        Kind::Session(R::DeleteBreakoutRoom) | Kind::Session(R::SelectRoom) => {
            json!({"session_id": session, "room_id": elsewhere})
        }
        Kind::Session(R::SetBreakoutOptions) => json!({"session_id": session, "allow_self_select": true}),
        Kind::Session(R::PlanBreakouts) => json!({"session_id": session, "automatic": true}),
        Kind::Session(R::MoveParticipant) => json!({"session_id": session, "user_id": other,
            "from_room_id": room, "to_room_id": elsewhere}),
        Kind::Session(R::AssignParticipants) => {
            json!({"session_id": session, "assignments": [{"user_id": other, "room_id": elsewhere}]})
        }
        Kind::Session(R::SwapParticipants) => json!({"session_id": session, "user_a": other, "user_b": other}),
        Kind::Session(R::CloseBreakoutRooms) => json!({"session_id": session}),
        Kind::Session(R::Broadcast) => json!({"session_id": session, "body": "to everyone"}),
        Kind::Session(R::SendSignal) => json!({"session_id": session, "to_user_id": other,
            "signal": {"type": "offer", "sdp": "v=0"}}),
        Kind::User(kind) => user_example(kind, other),
    };
    let mut request = body;
    request["type"] = json!(kind.tag());
    request["request_id"] = json!(PROBE);
    request
}

/// The conversation and notification requests: addressed to `other`, or to a conversation that
/// does not exist.
fn user_example(kind: UserRequestKind, other: UserId) -> Value {
    use UserRequestKind as U;
    let conversation = Uuid::new_v4();
    match kind {
        U::OpenConversation | U::BlockUser | U::UnblockUser => json!({"user_id": other}),
        U::ListConversations | U::ListNotifications | U::CountNotifications => json!({}),
        U::SendDirect => json!({"to": {"user_id": other}, "client_msg_id": "d1", "body": "hello"}),
        U::EditDirect => json!({"conversation_id": conversation, "message_id": Uuid::new_v4(), "body": "edited"}),
        U::DeleteDirect => json!({"conversation_id": conversation, "message_id": Uuid::new_v4()}),
        U::FetchDirectHistory => json!({"conversation_id": conversation}),
        U::SyncConversations => json!({"positions": [{"conversation_id": conversation, "last_seq": 0}]}),
        U::MarkConversationRead => json!({"conversation_id": conversation, "seq": 1}),
        U::DirectTyping => json!({"conversation_id": conversation, "active": true}),
        U::ArchiveConversation => json!({"conversation_id": conversation, "archived": true}),
        U::FocusConversation => json!({"conversation_id": conversation}),
        U::MarkNotificationsRead => json!({"all": true}),
    }
}

const PROBE: &str = "probe";

/// The request id a reply names, for every message that answers a request.
fn reply_to(message: &ServerMessage) -> Option<&RequestId> {
    match message {
        ServerMessage::Pong { request_id }
        | ServerMessage::Ok { request_id }
        | ServerMessage::SessionCreated { request_id, .. }
        | ServerMessage::Joined { request_id, .. }
        | ServerMessage::LobbyWaiting { request_id, .. }
        | ServerMessage::Left { request_id, .. }
        | ServerMessage::MessageAck { request_id, .. }
        | ServerMessage::History { request_id, .. }
        | ServerMessage::RosterPage { request_id, .. }
        | ServerMessage::BreakoutPlan { request_id, .. }
        | ServerMessage::Conversation { request_id, .. }
        | ServerMessage::Conversations { request_id, .. }
        | ServerMessage::DirectAck { request_id, .. }
        | ServerMessage::DirectHistory { request_id, .. }
        | ServerMessage::ConversationsSynced { request_id, .. }
        | ServerMessage::Notifications { request_id, .. }
        | ServerMessage::NotificationCounts { request_id, .. } => request_id.as_ref(),
        ServerMessage::Error(error) => error.request_id.as_ref(),
        _ => None,
    }
}

/// A connection put in `standing`, the session it stands in, and another person of it. The
/// other connections are kept open for the probe's lifetime.
struct Probe {
    client: Client,
    session: SessionId,
    other: UserId,
    _others: Vec<Client>,
}

/// Where the session's owner runs, and where the probing connection connects: the same server,
/// or two nodes, so that every request crosses to the owner and its reply comes back.
struct Nodes<'a> {
    owner: &'a TestServer,
    probe: &'a TestServer,
}

async fn prepare(nodes: &Nodes<'_>, standing: Standing) -> Result<Probe> {
    let org = Some(Uuid::new_v4());
    let host = TestUser::new(Role::Therapist, org);
    let lobby = matches!(standing, Standing::InLobby | Standing::Denied);
    let session = nodes.owner.create_session(&host, json!({"session_type": "group", "lobby_enabled": lobby})).await?;
    // The host joins first, through the owner's node, which makes it the session's owner.
    let mut host_client = Client::connect(nodes.owner, &host).await?;
    host_client.join(session.id).await?;
    let participant_org = if standing == Standing::Refused { Some(Uuid::new_v4()) } else { org };
    let participant = TestUser::new(Role::Patient, participant_org);
    let mut client = Client::connect(nodes.probe, &participant).await?;
    let join = json!({"type": "join_session", "request_id": "j", "session_id": session.id});
    match standing {
        Standing::NeverJoined => {}
        Standing::InLobby => {
            client.send_json(join).await?;
            client.recv_until(|m| matches!(m, ServerMessage::LobbyWaiting { .. }).then_some(())).await?;
        }
        Standing::Denied => {
            client.send_json(join).await?;
            client.recv_until(|m| matches!(m, ServerMessage::LobbyWaiting { .. }).then_some(())).await?;
            host_client.recv_until(|m| matches!(m, ServerMessage::LobbyEntered { .. }).then_some(())).await?;
            host_client
                .send_json(json!({"type": "deny_participant", "session_id": session.id, "user_id": participant.id}))
                .await?;
            client.recv_until(|m| matches!(m, ServerMessage::Denied { .. }).then_some(())).await?;
        }
        Standing::Refused => {
            client.send_json(join).await?;
            client.expect_error(ErrorCode::NotFound).await?;
        }
        Standing::Joined | Standing::JoinedAsHost => {
            client.join(session.id).await?;
        }
        Standing::Left => {
            client.join(session.id).await?;
            client.send_json(json!({"type": "leave_session", "session_id": session.id})).await?;
            client.recv_until(|m| matches!(m, ServerMessage::Left { .. }).then_some(())).await?;
        }
        Standing::Removed => {
            client.join(session.id).await?;
            let remove = json!({"type": "remove_participant", "session_id": session.id, "user_id": participant.id});
            ensure!(host_client.request(remove).await? == Ok(()), "the host could not remove the participant");
            client.recv_until(|m| matches!(m, ServerMessage::Removed { .. }).then_some(())).await?;
        }
        Standing::SessionEnded => {
            client.join(session.id).await?;
            host_client.send_json(json!({"type": "end_session", "session_id": session.id})).await?;
            client.recv_until(|m| matches!(m, ServerMessage::SessionEnded { .. }).then_some(())).await?;
        }
    }
    client.sync().await?;
    host_client.sync().await?;
    Ok(if standing == Standing::JoinedAsHost {
        // The host probes from another device of theirs, on the probe's node.
        let mut host_probe = Client::connect(nodes.probe, &host).await?;
        host_probe.join(session.id).await?;
        host_probe.sync().await?;
        Probe { client: host_probe, session: session.id, other: participant.id, _others: vec![client, host_client] }
    } else {
        Probe { client, session: session.id, other: host.id, _others: vec![host_client] }
    })
}

/// Sends the request and counts the replies that name it, up to a ping sent right after.
async fn replies(probe: &mut Probe, request: Value) -> Result<usize> {
    probe.client.send_json(request).await?;
    let mut count = 0;
    // The first reply may follow events the request caused; wait for it, then for the ping.
    loop {
        let message = probe.client.recv().await?;
        if reply_to(&message).is_some_and(|r| r.as_str() == PROBE) {
            count += 1;
            break;
        }
    }
    for message in probe.client.sync().await? {
        if reply_to(&message).is_some_and(|r| r.as_str() == PROBE) {
            count += 1;
        }
    }
    Ok(count)
}

async fn every_request_gets_exactly_one_reply_in_every_state(backend: Backend) -> Result<()> {
    let (owner, other) = owner_and_other(backend).await?;
    let nodes = Nodes { owner: owner.as_ref().unwrap_or(&other), probe: &other };
    let mut probed = 0;
    for standing in STANDINGS {
        for kind in Kind::all() {
            let mut probe = prepare(&nodes, standing).await.with_context(|| format!("preparing {standing:?}"))?;

            let request = example(kind, probe.session, probe.other);
            let count = replies(&mut probe, request)
                .await
                .with_context(|| format!("{kind:?} while {standing:?} got no reply"))?;
            if count != 1 {
                bail!("{kind:?} while {standing:?} got {count} replies");
            }
            probed += 1;
        }
    }
    ensure!(probed == STANDINGS.len() * Kind::all().count());
    Ok(())
}
