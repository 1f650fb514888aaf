//! What the breakout tests share: a session with a host and participants (on one node or two),
//! and the requests and views they use again and again.

use std::collections::HashSet;

use anyhow::{Result, bail};
use convene_protocol::{BreakoutRoomView, MoveReason, Role, RoomId, ServerMessage, SessionId, UserId};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{Backend, Client, TestServer, TestUser, departures};
use crate::nodes::owner_and_other;

/// A group session with a host and `n` participants, all joined. With [`Backend::TwoNodes`] the
/// host joined first on one node (which owns the session) and `server`, through which everyone
/// else connects, is the other node.
pub(crate) struct Fixture {
    pub(crate) server: TestServer,
    /// The session's owner, when it is not `server`.
    pub(crate) owner: Option<TestServer>,
    pub(crate) host: TestUser,
    pub(crate) host_client: Client,
    pub(crate) session: SessionId,
    pub(crate) main: RoomId,
    pub(crate) people: Vec<(TestUser, Client)>,
}

pub(crate) async fn fixture(backend: Backend, n: usize) -> Result<Fixture> {
    let (owner, server) = owner_and_other(backend).await?;
    fixture_on(owner, server, n).await
}

/// [`fixture`] on nodes already started (see [`owner_and_other`]).
pub(crate) async fn fixture_on(owner: Option<TestServer>, server: TestServer, n: usize) -> Result<Fixture> {
    let org = Some(Uuid::new_v4());
    let host = TestUser::new(Role::Therapist, org);
    let view = server.create_session(&host, json!({"session_type": "group"})).await?;
    let mut host_client = Client::connect(owner.as_ref().unwrap_or(&server), &host).await?;
    host_client.join(view.id).await?;
    let mut people = Vec::new();
    for _ in 0..n {
        let user = TestUser::new(Role::Patient, org);
        let mut client = Client::connect(&server, &user).await?;
        client.join(view.id).await?;
        people.push((user, client));
    }
    Ok(Fixture { server, owner, host, host_client, session: view.id, main: view.main_room_id, people })
}

impl Fixture {
    /// Stops the nodes and hands back the database, with every departure recorded.
    pub(crate) async fn stop(&mut self) -> Result<crate::common::TestDb> {
        stop_nodes(&mut self.server, &mut self.owner, &self.host, self.session).await
    }
}

/// Stops a fixture's nodes: the other node first, then (once the owner has seen its people
/// leave) the owner.
pub(crate) async fn stop_nodes(
    server: &mut TestServer,
    owner: &mut Option<TestServer>,
    host: &TestUser,
    session: SessionId,
) -> Result<crate::common::TestDb> {
    let Some(mut owner) = owner.take() else { return server.halt().await };
    let mut watcher = Client::connect(&owner, host).await?;
    let joined = watcher.join(session).await?;
    let mut present: HashSet<UserId> =
        joined.members.iter().map(|m| m.user_id).filter(|user| *user != host.id).collect();
    server.halt().await?;
    while !present.is_empty() {
        for user_id in departures(&watcher.recv().await?) {
            present.remove(&user_id);
        }
    }
    drop(watcher);
    owner.halt().await
}

/// Creates `count` rooms and returns their ids, in creation order.
pub(crate) async fn create_rooms(f: &mut Fixture, count: u32, max: u32, mode: &str) -> Result<Vec<RoomId>> {
    let id = format!("c-{}", Uuid::new_v4().simple());
    f.host_client
        .send_json(json!({"type": "create_breakout_rooms", "request_id": id, "session_id": f.session, "count": count, "max_participants": max, "assignment_mode": mode}))
        .await?;
    let mut rooms = Vec::new();
    loop {
        match f.host_client.recv().await? {
            ServerMessage::BreakoutsChanged { rooms: changed, .. } => {
                rooms.extend(changed.into_iter().map(|r| r.room_id))
            }
            ServerMessage::Ok { request_id: Some(r) } if r.as_str() == id => return Ok(rooms),
            ServerMessage::Error(e) => bail!("create failed: {e:?}"),
            _ => {}
        }
    }
}

/// The next `moved` event of a client: (room, reason, members in the room as its roster shows
/// it, the room's last chat sequence). Several people moved at once are in the roster they are
/// sent; one person moved alone is added by the diff that follows.
pub(crate) async fn moved(client: &mut Client) -> Result<(RoomId, MoveReason, usize, i64)> {
    client
        .recv_until(|m| match m {
            ServerMessage::Moved { room, reason, roster, .. } => {
                Some((room.room_id, reason, roster.total as usize, room.last_seq))
            }
            _ => None,
        })
        .await
}

pub(crate) fn mv(session: SessionId, user: UserId, from: RoomId, to: RoomId) -> Value {
    json!({"type": "move_participant", "session_id": session, "user_id": user, "from_room_id": from, "to_room_id": to})
}

/// The breakout overview a host sees on (re)joining.
pub(crate) async fn overview(
    server: &TestServer,
    host: &TestUser,
    session: SessionId,
) -> Result<Vec<BreakoutRoomView>> {
    let mut client = Client::connect(server, host).await?;
    client.send_json(json!({"type": "join_session", "session_id": session})).await?;
    match client.recv().await? {
        ServerMessage::Joined { breakouts: Some(overview), .. } => Ok(overview.rooms),
        other => bail!("expected joined with an overview, got {other:?}"),
    }
}
