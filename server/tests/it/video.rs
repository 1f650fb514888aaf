//! Video through the real server: which devices connect follows the room they are in, signals
//! reach only those peers (on one node and across two), and the ICE servers carry TURN
//! credentials a TURN server with the shared secret accepts.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use convene_protocol::{ConnId, ErrorCode, Role, RoomId, ServerMessage, SessionId, Signal, UserId};
use serde_json::json;
use uuid::Uuid;

use crate::common::{Backend, Client, TestServer, TestUser};
use crate::nodes::owner_and_other;
use crate::{across_nodes, on_both_backends};

on_both_backends!(peers_follow_the_room_and_signals_reach_only_peers);
across_nodes!(peers_follow_the_room_and_signals_reach_only_peers);

/// A device's view of its peer connections, kept as the server tells it.
struct Device {
    user: TestUser,
    client: Client,
    room: Option<RoomId>,
    /// Open peer connections: the other device, its person, and whether this device offers.
    peers: BTreeSet<(ConnId, UserId, bool)>,
}

impl Device {
    async fn join(server: &TestServer, user: TestUser, session: SessionId) -> Result<Self> {
        let mut client = Client::connect(server, &user).await?;
        client.join_video(session).await?;
        Ok(Self { user, client, room: None, peers: BTreeSet::new() })
    }

    /// Follows `peers_changed` until the device is connected to exactly `people`'s devices.
    async fn connected_to(&mut self, people: &[UserId]) -> Result<()> {
        let wanted: BTreeSet<UserId> = people.iter().copied().collect();
        while self.peers.iter().map(|(_, user, _)| *user).collect::<BTreeSet<_>>() != wanted {
            let (room, open, close) = self
                .client
                .recv_until(|m| match m {
                    ServerMessage::PeersChanged { room_id, open, close, .. } => Some((room_id, open, close)),
                    _ => None,
                })
                .await?;
            self.room = Some(room);
            for gone in close {
                ensure!(
                    self.peers.iter().any(|(device, _, _)| *device == gone.device),
                    "told to close {gone:?}, which is not open"
                );
                self.peers.retain(|(device, _, _)| *device != gone.device);
            }
            for peer in open {
                ensure!(self.peers.insert((peer.device, peer.user_id, peer.offer)), "told to open {peer:?} twice");
            }
        }
        Ok(())
    }

    /// The open connection with `user`'s device: that device, and whether this one offers.
    fn peer(&self, user: UserId) -> Result<(ConnId, bool)> {
        match self.peers.iter().find(|(_, owner, _)| *owner == user) {
            Some((device, _, offers)) => Ok((*device, *offers)),
            None => bail!("no connection with {user:?}"),
        }
    }

    async fn signal(&mut self, session: SessionId, to: UserId, signal: Signal) -> Result<Result<(), ErrorCode>> {
        self.client
            .request(json!({"type": "send_signal", "session_id": session, "to_user_id": to, "signal": signal}))
            .await
    }

    async fn received(&mut self) -> Result<(UserId, ConnId, Box<Signal>)> {
        self.client
            .recv_until(|m| match m {
                ServerMessage::SignalReceived { from_user_id, from_device, signal, .. } => {
                    Some((from_user_id, from_device, signal))
                }
                _ => None,
            })
            .await
    }
}

/// Runs an offer and answer between `a` and `b` through the server, the offering side being the
/// one the server named; checks each end hears the other's device.
async fn negotiate(session: SessionId, a: &mut Device, b: &mut Device) -> Result<()> {
    let (b_device, a_offers) = a.peer(b.user.id)?;
    let (a_device, b_offers) = b.peer(a.user.id)?;
    ensure!(a_offers != b_offers, "exactly one side offers");
    let (offerer, answerer, answerer_device, offerer_device) =
        if a_offers { (a, b, b_device, a_device) } else { (b, a, a_device, b_device) };
    let offer = Signal::Offer { sdp: format!("v=0 offer from {}", offerer.user.id.0) };
    ensure!(offerer.signal(session, answerer.user.id, offer.clone()).await? == Ok(()));
    let (from, device, got) = answerer.received().await?;
    ensure!((from, device, &*got) == (offerer.user.id, offerer_device, &offer), "the offer arrives as sent");
    let answer = Signal::Answer { sdp: "v=0 answer".to_owned() };
    ensure!(answerer.signal(session, offerer.user.id, answer.clone()).await? == Ok(()));
    let (from, device, got) = offerer.received().await?;
    ensure!((from, device, *got) == (answerer.user.id, answerer_device, answer), "the answer arrives as sent");
    Ok(())
}

async fn peers_follow_the_room_and_signals_reach_only_peers(backend: Backend) -> Result<()> {
    // With two nodes the host is on the session's owner and the others on the second node, so
    // every signal between them crosses the bus.
    let (owner, server) = owner_and_other(backend).await?;
    let org = Some(Uuid::new_v4());
    let host_user = TestUser::new(Role::Therapist, org);
    let session = server.create_session(&host_user, json!({"session_type": "group"})).await?;
    let mut host = Device::join(owner.as_ref().unwrap_or(&server), host_user, session.id).await?;
    let mut a = Device::join(&server, TestUser::new(Role::Patient, org), session.id).await?;
    let mut b = Device::join(&server, TestUser::new(Role::Patient, org), session.id).await?;
    let chatter = TestUser::new(Role::Patient, org);
    let mut chat_only = Client::connect(&server, &chatter).await?;
    chat_only.join(session.id).await?;

    let (h, ua, ub) = (host.user.id, a.user.id, b.user.id);
    host.connected_to(&[ua, ub]).await?;
    a.connected_to(&[h, ub]).await?;
    b.connected_to(&[h, ua]).await?;
    ensure!(host.room == Some(session.main_room_id));
    negotiate(session.id, &mut host, &mut a).await?;
    negotiate(session.id, &mut a, &mut b).await?;
    let to_chatter = a.signal(session.id, chatter.id, Signal::Answer { sdp: "v=0".into() }).await?;
    ensure!(to_chatter == Err(ErrorCode::Forbidden), "a chat-only device is nobody's peer: {to_chatter:?}");

    // The host opens a breakout and moves a there: a's connections close, and the others' with a.
    let breakout = create_room(&mut host.client, session.id).await?;
    let move_a = json!({"type": "move_participant", "session_id": session.id, "user_id": ua,
        "from_room_id": session.main_room_id, "to_room_id": breakout});
    ensure!(host.client.request(move_a).await? == Ok(()));
    a.connected_to(&[]).await?;
    ensure!(a.room == Some(breakout), "a is told it is in the breakout");
    host.connected_to(&[ub]).await?;
    b.connected_to(&[h]).await?;
    let across_rooms = b.signal(session.id, ua, Signal::Offer { sdp: "v=0".into() }).await?;
    ensure!(across_rooms == Err(ErrorCode::Forbidden), "signals stop at the room's door: {across_rooms:?}");

    // b follows a: they connect, and the host is left alone.
    let move_b = json!({"type": "move_participant", "session_id": session.id, "user_id": ub,
        "from_room_id": session.main_room_id, "to_room_id": breakout});
    ensure!(host.client.request(move_b).await? == Ok(()));
    a.connected_to(&[ub]).await?;
    b.connected_to(&[ua]).await?;
    host.connected_to(&[]).await?;
    negotiate(session.id, &mut a, &mut b).await?;

    // A device that goes away is closed by the others.
    drop(a);
    b.connected_to(&[]).await?;
    Ok(())
}

/// Creates one breakout room as the host; its id.
pub(crate) async fn create_room(host: &mut Client, session: SessionId) -> Result<RoomId> {
    let id = format!("c-{}", Uuid::new_v4().simple());
    host.send_json(json!({"type": "create_breakout_rooms", "request_id": id, "session_id": session,
        "count": 1, "max_participants": 5}))
        .await?;
    let mut rooms = Vec::new();
    loop {
        match host.recv().await? {
            ServerMessage::BreakoutsChanged { rooms: changed, .. } => {
                rooms.extend(changed.into_iter().map(|r| r.room_id))
            }
            ServerMessage::Ok { request_id: Some(r) } if r.as_str() == id => break,
            ServerMessage::Error(e) => bail!("create failed: {e:?}"),
            _ => {}
        }
    }
    rooms.first().copied().ok_or_else(|| anyhow::anyhow!("no room created"))
}

const TURN_SECRET: &str = "shared-with-the-turn-server";

/// `GET /v1/ice-servers` and `joined` both hand out the configured servers, with TURN
/// credentials for the caller that a TURN server holding the secret accepts until they expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_servers_carry_turn_credentials_for_the_caller() -> Result<()> {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.ice = convene_server::ice::IceConfig::new(
            vec!["stun:stun.convene.test:3478".to_owned()],
            vec!["turn:turn.convene.test:3478?transport=udp".to_owned()],
            Some(TURN_SECRET.to_owned()),
            Duration::from_secs(600),
        )
        .expect("a valid ICE configuration");
    })
    .await?;
    let http = reqwest::Client::new();
    let anonymous = http.get(server.http("/v1/ice-servers")).send().await?;
    ensure!(anonymous.status() == reqwest::StatusCode::UNAUTHORIZED);

    let user = TestUser::new(Role::Patient, Some(Uuid::new_v4()));
    let servers: convene_protocol::IceServers =
        http.get(server.http("/v1/ice-servers")).bearer_auth(user.token()).send().await?.json().await?;
    let now = chrono::Utc::now();
    check_turn(&servers, user.id, now)?;

    let host = TestUser::new(Role::Therapist, user.org);
    let session = server.create_session(&host, json!({"session_type": "group"})).await?;
    let mut client = Client::connect(&server, &host).await?;
    client.send_json(json!({"type": "join_session", "session_id": session.id, "video": true})).await?;
    let joined = client
        .recv_until(|m| match m {
            ServerMessage::Joined { ice_servers, .. } => Some(ice_servers),
            _ => None,
        })
        .await?;
    let Some(servers) = joined else { bail!("joined carries no ICE servers") };
    check_turn(&servers, host.id, now)
}

/// STUN first, without credentials; then TURN for `user`, accepted now and refused once expired.
fn check_turn(servers: &convene_protocol::IceServers, user: UserId, now: chrono::DateTime<chrono::Utc>) -> Result<()> {
    use convene_server::ice::turn_accepts;
    let [stun, turn] = servers.ice_servers.as_slice() else { bail!("STUN and TURN: {servers:?}") };
    ensure!(stun.urls == ["stun:stun.convene.test:3478"] && stun.username.is_none());
    let (Some(username), Some(password)) = (&turn.username, &turn.credential) else { bail!("TURN credentials") };
    ensure!(username.ends_with(&format!(":{user}")), "{username}");
    let expires_at = servers.expires_at.ok_or_else(|| anyhow::anyhow!("no expiry"))?;
    let ttl = expires_at - now;
    ensure!(ttl > chrono::Duration::seconds(590) && ttl <= chrono::Duration::seconds(610), "{ttl}");
    ensure!(turn_accepts(TURN_SECRET, username, password, now));
    ensure!(!turn_accepts(TURN_SECRET, username, password, expires_at), "refused once expired");
    ensure!(!turn_accepts("another secret", username, password, now));
    Ok(())
}
