//! Real WebRTC peers (webrtc-rs) that negotiate through Convene as a browser does: each joins
//! with video, opens and closes peer connections as `peers_changed` says, trickles its offer,
//! answer and ICE candidates through `send_signal`, and, once connected, talks to the others
//! over a data channel. Nothing here is simulated: the connections are real DTLS/SCTP over
//! loopback UDP, and they come up only if the server relayed every signal intact to the right
//! device.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail, ensure};
use convene_protocol::{ConnId, ErrorCode, Role, ServerMessage, SessionId, Signal, UserId};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::task::AbortOnDropHandle;
use uuid::Uuid;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent,
    RTCSessionDescription,
};

use crate::common::{Backend, Client, EVENT_TIMEOUT, TestServer, TestUser};
use crate::nodes::owner_and_other;
use crate::video::create_room;
use crate::{across_nodes, on_both_backends};

on_both_backends!(connections_follow_people_into_a_breakout);
across_nodes!(connections_follow_people_into_a_breakout);

/// What a device's peer connections have done, as the test sees it.
#[derive(Debug)]
enum Seen {
    /// The data channel with `user`'s device is open: their peer connection is up.
    Open(UserId),
    /// The server said to close the connection with `user`'s device, and it is closed.
    Closed(UserId),
    /// `user` sent this text over the data channel.
    Heard(UserId, String),
    /// The server refused a signal this device was asked to send out of turn.
    Refused(ErrorCode),
}

/// What the test asks a device to do.
enum Command {
    /// Send text over the data channel with that person's device.
    Say(UserId, String),
    /// Send that person an offer outside any connection the server opened.
    OfferOutOfTurn(UserId),
}

/// The request id of an out-of-turn offer, whose refusal is reported rather than fatal.
const OUT_OF_TURN: &str = "out-of-turn";

/// What the peer connections' callbacks hand their device's driver.
enum Local {
    Candidate(ConnId, RTCIceCandidateInit),
    /// The other side opened a data channel: the connection is up.
    Channel(ConnId, Arc<dyn DataChannel>),
    /// The data channel this side opened is open.
    Opened(ConnId),
    Received(ConnId, String),
}

/// Room for the callbacks' reports while the driver is busy negotiating another peer.
const LOCAL_CAPACITY: usize = 256;
/// Room for what the test has not read yet; a scenario sees a few dozen events.
const SEEN_CAPACITY: usize = 256;

/// A browser stand-in: a Convene connection joined with video, and its peer connections.
struct RtcDevice {
    user: TestUser,
    commands: mpsc::Sender<Command>,
    seen: mpsc::Receiver<Seen>,
    /// The people whose devices this one has an open connection with.
    open: BTreeSet<UserId>,
    heard: Vec<(UserId, String)>,
    driver: AbortOnDropHandle<Result<()>>,
}

impl RtcDevice {
    async fn join(server: &TestServer, user: TestUser, session: SessionId) -> Result<Self> {
        let mut client = Client::connect(server, &user).await?;
        client.join_video(session).await?;
        let (local_tx, local_rx) = mpsc::channel(LOCAL_CAPACITY);
        let (seen_tx, seen) = mpsc::channel(SEEN_CAPACITY);
        let (commands, commanded) = mpsc::channel(1);
        let driver =
            Driver { client, session, links: HashMap::new(), local: local_tx, seen: seen_tx, channels: JoinSet::new() };
        let driver = AbortOnDropHandle::new(tokio::spawn(driver.run(local_rx, commanded)));
        Ok(Self { user, commands, seen, open: BTreeSet::new(), heard: Vec::new(), driver })
    }

    async fn next(&mut self) -> Result<Seen> {
        match tokio::time::timeout(EVENT_TIMEOUT, self.seen.recv()).await {
            Ok(Some(seen)) => Ok(seen),
            Ok(None) => match (&mut self.driver).await {
                Ok(Err(err)) => Err(err.context(format!("{:?}'s device stopped", self.user.id))),
                other => bail!("{:?}'s device stopped: {other:?}", self.user.id),
            },
            Err(_) => bail!("{:?}'s device saw nothing within {EVENT_TIMEOUT:?}; open: {:?}", self.user.id, self.open),
        }
    }

    fn note(&mut self, seen: Seen) -> Result<()> {
        match seen {
            Seen::Open(user) => ensure!(self.open.insert(user), "a second connection with {user:?}"),
            Seen::Closed(user) => ensure!(self.open.remove(&user), "closed {user:?}, which was not open"),
            Seen::Heard(user, text) => self.heard.push((user, text)),
            Seen::Refused(code) => bail!("an unexpected refusal: {code:?}"),
        }
        Ok(())
    }

    /// Waits until this device's open connections are exactly those with `people`.
    async fn connected_to(&mut self, people: &[&RtcDevice]) -> Result<()> {
        let wanted: BTreeSet<UserId> = people.iter().map(|device| device.user.id).collect();
        while self.open != wanted {
            let seen = self.next().await?;
            self.note(seen)?;
        }
        Ok(())
    }

    async fn command(&self, command: Command) -> Result<()> {
        self.commands.send(command).await.map_err(|_| anyhow!("the device stopped"))
    }

    async fn say(&self, to: &RtcDevice, text: &str) -> Result<()> {
        self.command(Command::Say(to.user.id, text.to_owned())).await
    }

    /// Offers a connection to `to`'s device, which the server did not open; the refusal.
    async fn offer_out_of_turn(&mut self, to: &RtcDevice) -> Result<ErrorCode> {
        self.command(Command::OfferOutOfTurn(to.user.id)).await?;
        loop {
            match self.next().await? {
                Seen::Refused(code) => return Ok(code),
                seen => self.note(seen)?,
            }
        }
    }

    /// Waits until `from` said `text` over their data channel.
    async fn hears(&mut self, from: &RtcDevice, text: &str) -> Result<()> {
        let wanted = (from.user.id, text.to_owned());
        while !self.heard.contains(&wanted) {
            let seen = self.next().await?;
            self.note(seen)?;
        }
        Ok(())
    }
}

/// One peer connection: whose device is at the other end, and its data channel once open.
struct Link {
    user: UserId,
    pc: Arc<dyn PeerConnection>,
    channel: Option<Arc<dyn DataChannel>>,
    open: bool,
}

/// Carries out what the server says, the way the TypeScript client's video helper does.
struct Driver {
    client: Client,
    session: SessionId,
    links: HashMap<ConnId, Link>,
    local: mpsc::Sender<Local>,
    seen: mpsc::Sender<Seen>,
    /// One task per data channel, reading its events.
    channels: JoinSet<()>,
}

impl Driver {
    async fn run(mut self, mut local: mpsc::Receiver<Local>, mut commands: mpsc::Receiver<Command>) -> Result<()> {
        let result = loop {
            tokio::select! {
                frame = self.client.ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        let message: ServerMessage = serde_json::from_str(text.as_str())?;
                        self.on_server(message).await?;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(other)) => break Err(anyhow!("unexpected frame {other:?}")),
                    Some(Err(err)) => break Err(err.into()),
                    None => break Err(anyhow!("the server closed the connection")),
                },
                Some(event) = local.recv() => self.on_local(event).await?,
                command = commands.recv() => match command {
                    Some(Command::Say(to, text)) => self.say(to, &text).await?,
                    Some(Command::OfferOutOfTurn(to)) => {
                        let request = json!({"type": "send_signal", "request_id": OUT_OF_TURN,
                            "session_id": self.session, "to_user_id": to, "signal": {"type": "offer", "sdp": "v=0"}});
                        self.client.ws.send(Message::text(request.to_string())).await?;
                    }
                    None => break Ok(()),
                },
            }
        };
        for link in self.links.values() {
            link.pc.close().await?;
        }
        result
    }

    async fn on_server(&mut self, message: ServerMessage) -> Result<()> {
        match message {
            ServerMessage::PeersChanged { close, open, .. } => {
                for gone in close {
                    let link = self.links.remove(&gone.device).context("told to close a connection never opened")?;
                    link.pc.close().await?;
                    self.report(Seen::Closed(link.user)).await?;
                }
                for peer in open {
                    ensure!(!self.links.contains_key(&peer.device), "told to open {:?} twice", peer.device);
                    let pc = self.connect(peer.device).await?;
                    let mut link = Link { user: peer.user_id, pc: pc.clone(), channel: None, open: false };
                    if peer.offer {
                        let channel = pc.create_data_channel("convene", None).await?;
                        self.watch(peer.device, channel.clone());
                        link.channel = Some(channel);
                        let offer = pc.create_offer(None).await?;
                        pc.set_local_description(offer.clone()).await?;
                        self.signal(peer.user_id, peer.device, Signal::Offer { sdp: offer.sdp }).await?;
                    }
                    self.links.insert(peer.device, link);
                }
            }
            ServerMessage::SignalReceived { from_user_id, from_device, signal, .. } => {
                // Candidates still in flight when a connection closes arrive for no connection.
                let Some(link) = self.links.get(&from_device) else { return Ok(()) };
                let pc = link.pc.clone();
                match *signal {
                    Signal::Offer { sdp } => {
                        pc.set_remote_description(RTCSessionDescription::offer(sdp)?).await?;
                        let answer = pc.create_answer(None).await?;
                        pc.set_local_description(answer.clone()).await?;
                        self.signal(from_user_id, from_device, Signal::Answer { sdp: answer.sdp }).await?;
                    }
                    Signal::Answer { sdp } => pc.set_remote_description(RTCSessionDescription::answer(sdp)?).await?,
                    Signal::IceCandidate { candidate, sdp_mid, sdp_m_line_index, username_fragment } => {
                        let init = RTCIceCandidateInit {
                            candidate,
                            sdp_mid,
                            sdp_mline_index: sdp_m_line_index,
                            username_fragment,
                            url: None,
                        };
                        pc.add_ice_candidate(init).await?;
                    }
                }
            }
            ServerMessage::Error(error) if error.request_id.as_ref().is_some_and(|id| id.as_str() == OUT_OF_TURN) => {
                self.report(Seen::Refused(error.code)).await?;
            }
            ServerMessage::Error(error) => bail!("the server refused a request: {error:?}"),
            _ => {}
        }
        Ok(())
    }

    async fn on_local(&mut self, event: Local) -> Result<()> {
        match event {
            Local::Candidate(device, init) => {
                if let Some(user) = self.links.get(&device).map(|link| link.user) {
                    let candidate = Signal::IceCandidate {
                        candidate: init.candidate,
                        sdp_mid: init.sdp_mid,
                        sdp_m_line_index: init.sdp_mline_index,
                        username_fragment: init.username_fragment,
                    };
                    self.signal(user, device, candidate).await?;
                }
            }
            Local::Channel(device, channel) => {
                self.watch(device, channel.clone());
                if let Some(link) = self.links.get_mut(&device) {
                    link.channel = Some(channel);
                }
                self.opened(device).await?;
            }
            Local::Opened(device) => self.opened(device).await?,
            Local::Received(device, text) => {
                if let Some(user) = self.links.get(&device).map(|link| link.user) {
                    self.report(Seen::Heard(user, text)).await?;
                }
            }
        }
        Ok(())
    }

    /// Reports a connection open once, however many ways it was noticed.
    async fn opened(&mut self, device: ConnId) -> Result<()> {
        let Some(link) = self.links.get_mut(&device) else { return Ok(()) };
        if !std::mem::replace(&mut link.open, true) {
            let user = link.user;
            self.report(Seen::Open(user)).await?;
        }
        Ok(())
    }

    async fn say(&mut self, to: UserId, text: &str) -> Result<()> {
        let channel = self
            .links
            .values()
            .find(|link| link.user == to && link.open)
            .and_then(|link| link.channel.clone())
            .with_context(|| format!("no open channel with {to:?}"))?;
        channel.send_text(text).await?;
        Ok(())
    }

    async fn connect(&self, device: ConnId) -> Result<Arc<dyn PeerConnection>> {
        let handler = Arc::new(Callbacks { device, local: self.local.clone() });
        // The builder's future is large; boxed, it does not bloat every future that awaits it.
        let pc = Box::pin(
            PeerConnectionBuilder::new().with_handler(handler).with_udp_addrs(vec!["127.0.0.1:0".to_owned()]).build(),
        )
        .await?;
        Ok(Arc::new(pc))
    }

    /// Reads `channel`'s events into the driver until it closes.
    fn watch(&mut self, device: ConnId, channel: Arc<dyn DataChannel>) {
        let local = self.local.clone();
        self.channels.spawn(async move {
            while let Some(event) = channel.poll().await {
                let report = match event {
                    DataChannelEvent::OnOpen => Local::Opened(device),
                    DataChannelEvent::OnMessage(message) => {
                        Local::Received(device, String::from_utf8_lossy(&message.data).into_owned())
                    }
                    DataChannelEvent::OnClose => break,
                    _ => continue,
                };
                if local.send(report).await.is_err() {
                    break;
                }
            }
        });
    }

    async fn signal(&mut self, to: UserId, device: ConnId, signal: Signal) -> Result<()> {
        let request = json!({"type": "send_signal", "session_id": self.session, "to_user_id": to,
            "to_device": device, "signal": signal});
        self.client.ws.send(Message::text(request.to_string())).await?;
        Ok(())
    }

    async fn report(&self, seen: Seen) -> Result<()> {
        self.seen.send(seen).await.map_err(|_| anyhow!("the test stopped listening"))
    }
}

/// Hands a peer connection's events to its device's driver.
struct Callbacks {
    device: ConnId,
    local: mpsc::Sender<Local>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Callbacks {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => self.hand_over(Local::Candidate(self.device, init)).await,
            Err(err) => eprintln!("a local candidate could not be written down: {err}"),
        }
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        self.hand_over(Local::Channel(self.device, channel)).await;
    }
}

impl Callbacks {
    async fn hand_over(&self, event: Local) {
        if self.local.send(event).await.is_err() {
            eprintln!("an event of a connection whose device has stopped");
        }
    }
}

/// The host, who moves people, joins without video; three participants' devices join with it.
async fn connections_follow_people_into_a_breakout(backend: Backend) -> Result<()> {
    // With two nodes a is on the session's owner and b and c on the other node: every signal
    // between a and the others crosses the bus.
    let (owner, server) = owner_and_other(backend).await?;
    let org = Some(Uuid::new_v4());
    let host_user = TestUser::new(Role::Therapist, org);
    let session = server.create_session(&host_user, json!({"session_type": "group"})).await?;
    let mut host = Client::connect(&server, &host_user).await?;
    host.join(session.id).await?;
    let first = owner.as_ref().unwrap_or(&server);
    let mut a = RtcDevice::join(first, TestUser::new(Role::Patient, org), session.id).await?;
    let mut b = RtcDevice::join(&server, TestUser::new(Role::Patient, org), session.id).await?;

    // Two peers connect and talk both ways.
    a.connected_to(&[&b]).await?;
    b.connected_to(&[&a]).await?;
    a.say(&b, "hello b").await?;
    b.hears(&a, "hello b").await?;
    b.say(&a, "hello a").await?;
    a.hears(&b, "hello a").await?;

    // A third joins: a full mesh of three connections.
    let mut c = RtcDevice::join(&server, TestUser::new(Role::Patient, org), session.id).await?;
    a.connected_to(&[&b, &c]).await?;
    b.connected_to(&[&a, &c]).await?;
    c.connected_to(&[&a, &b]).await?;
    for (from, to) in [(&a, &c), (&b, &c), (&c, &a), (&c, &b)] {
        from.say(to, &format!("{} to {}", from.user.id, to.user.id)).await?;
    }
    c.hears(&a, &format!("{} to {}", a.user.id, c.user.id)).await?;
    c.hears(&b, &format!("{} to {}", b.user.id, c.user.id)).await?;
    a.hears(&c, &format!("{} to {}", c.user.id, a.user.id)).await?;
    b.hears(&c, &format!("{} to {}", c.user.id, b.user.id)).await?;

    // c goes to a breakout: every connection with c closes, a and b stay connected.
    let breakout = create_room(&mut host, session.id).await?;
    let to_breakout = |user: &RtcDevice| {
        json!({"type": "move_participant", "session_id": session.id, "user_id": user.user.id,
            "from_room_id": session.main_room_id, "to_room_id": breakout})
    };
    ensure!(host.request(to_breakout(&c)).await? == Ok(()));
    c.connected_to(&[]).await?;
    a.connected_to(&[&b]).await?;
    b.connected_to(&[&a]).await?;
    a.say(&b, "still here").await?;
    b.hears(&a, "still here").await?;

    // Signals stop at the room's door.
    let refused = a.offer_out_of_turn(&c).await?;
    ensure!(refused == ErrorCode::Forbidden, "a is not c's peer any more: {refused:?}");

    // b follows c: b's connection with a closes and a new one with c, already there, comes up.
    ensure!(host.request(to_breakout(&b)).await? == Ok(()));
    b.connected_to(&[&c]).await?;
    c.connected_to(&[&b]).await?;
    a.connected_to(&[]).await?;
    b.say(&c, "in the breakout").await?;
    c.hears(&b, "in the breakout").await?;
    Ok(())
}
