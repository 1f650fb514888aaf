//! Video between the devices of a room: who connects to whom, and the signals between them.
//!
//! Every device that joined for video (`join_session` with `video`) holds a peer connection
//! with each other person's video devices in its room (not with its own person's other
//! devices), while the room has at most [`MAX_MESH_DEVICES`] of them. After every command, the rooms whose devices changed
//! ([`crate::presence::Presence::take_touched`]) are drawn again, and each device whose peers
//! changed is told, in one `peers_changed`, which connections to open and which to close. Of two
//! devices, the one with the smaller id makes the offer, so both ends agree without asking and
//! no pair is connected twice. Because room changes reach presence only after they commit, a
//! device is never told to connect to someone whose move may still fail.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use convene_protocol::{ConnId, RequestId, RoomId, Signal, UserId};

use super::{Audience, Effect, Event, SessionError, SessionState, send};

/// Most devices in a room whose members are connected to each other. Every device sends its
/// video to every other, so a browser's uplink and CPU run out in the low teens; in a larger
/// room nobody is connected (until a media server forwards the video).
pub const MAX_MESH_DEVICES: usize = 12;

/// Who takes part in video, and the devices of each room as they were last told.
#[derive(Debug, Default)]
pub(super) struct Mesh {
    /// The attached devices that joined for video.
    pub(super) video: HashSet<ConnId>,
    rooms: HashMap<RoomId, BTreeMap<ConnId, UserId>>,
}

impl Mesh {
    /// `device` joined for video.
    pub(super) fn take_part(&mut self, device: ConnId) {
        self.video.insert(device);
    }

    /// `device` left the session.
    pub(super) fn leave(&mut self, device: ConnId) {
        self.video.remove(&device);
    }

    /// Whether `a` and `b` are connected in `room`: both there, and not the same person's.
    fn connects(&self, room: RoomId, a: ConnId, b: ConnId) -> bool {
        self.rooms.get(&room).is_some_and(|devices| match (devices.get(&a), devices.get(&b)) {
            (Some(user_a), Some(user_b)) => user_a != user_b,
            _ => false,
        })
    }
}

/// What one device is told to open and close.
#[derive(Debug, Default)]
struct PeerChange {
    open: Vec<(UserId, ConnId, bool)>,
    close: Vec<(UserId, ConnId)>,
}

impl SessionState {
    /// Draws again the peer connections of the rooms whose devices changed, and tells each
    /// device still here what changed for it.
    pub(super) fn redraw_peers(&mut self, out: &mut Vec<Effect>) {
        let touched = self.presence.take_touched();
        if touched.is_empty() {
            return;
        }
        let mut changes: BTreeMap<ConnId, PeerChange> = BTreeMap::new();
        for room in touched {
            let now = self.devices_in(room);
            let before = self.mesh.rooms.remove(&room).unwrap_or_default();
            let devices: BTreeSet<ConnId> = before.keys().chain(now.keys()).copied().collect();
            for device in devices {
                let Some(&user) = now.get(&device).or_else(|| before.get(&device)) else { continue };
                let others = |devices: &BTreeMap<ConnId, UserId>| -> BTreeMap<ConnId, UserId> {
                    if !devices.contains_key(&device) {
                        return BTreeMap::new();
                    }
                    devices.iter().filter(|(_, owner)| **owner != user).map(|(d, u)| (*d, *u)).collect()
                };
                let (had, has) = (others(&before), others(&now));
                let change = changes.entry(device).or_default();
                for (peer, owner) in &has {
                    if !had.contains_key(peer) {
                        change.open.push((*owner, *peer, device < *peer));
                    }
                }
                for (peer, owner) in &had {
                    if !has.contains_key(peer) {
                        change.close.push((*owner, *peer));
                    }
                }
            }
            if !now.is_empty() {
                self.mesh.rooms.insert(room, now);
            }
        }
        for (device, PeerChange { open, close }) in changes {
            if open.is_empty() && close.is_empty() {
                continue;
            }
            // A device that left the session closes its connections by itself.
            let Some(room) = self.present_device(device).map(|member| member.room) else { continue };
            send(out, Audience::Conn(device), Event::PeersChanged { room, open, close });
        }
    }

    /// The video devices of `room`, which connect to each other, with whose they are: none
    /// when the room has more than [`MAX_MESH_DEVICES`]. Walks whichever is smaller, the room's
    /// members or the session's video devices, and stops as soon as the room is too large.
    fn devices_in(&self, room: RoomId) -> BTreeMap<ConnId, UserId> {
        let Some(members) = self.rooms.get(&room).map(|room| &room.members) else { return BTreeMap::new() };
        let mut devices = BTreeMap::new();
        let mut add = |device: ConnId, user: UserId| {
            devices.insert(device, user);
            devices.len() <= MAX_MESH_DEVICES
        };
        let fits = if self.mesh.video.len() < members.len() {
            self.mesh.video.iter().all(|device| match self.present_device(*device) {
                Some(member) if member.room == room => add(*device, member.user_id),
                _ => true,
            })
        } else {
            members.iter().filter_map(|user| self.presence.get(*user)).filter(|member| member.room == room).all(
                |member| {
                    member
                        .conns
                        .iter()
                        .filter(|conn| self.mesh.video.contains(conn))
                        .all(|conn| add(*conn, member.user_id))
                },
            )
        };
        if fits { devices } else { BTreeMap::new() }
    }

    /// The member `device` belongs to, if it is one of their devices in the session.
    fn present_device(&self, device: ConnId) -> Option<&crate::presence::Member> {
        let attachment = self.conns.get(&device).filter(|attachment| attachment.admitted)?;
        self.presence.get(attachment.user).filter(|member| member.conns.contains(&device))
    }

    /// Relays `signal` from `conn` to a device of `to_user`, provided the two are connected:
    /// both in the caller's room, and that room small enough to connect everyone.
    pub(super) fn signal(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        to_user: UserId,
        to_device: Option<ConnId>,
        signal: Box<Signal>,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let from = self.member_of(conn)?;
        let (from_user, room) = (from.user_id, from.room);
        let target = self
            .presence
            .get(to_user)
            .filter(|member| member.user_id != from_user && member.room == room)
            .ok_or(SessionError::NotPeer)?;
        let device = match (to_device, target.conns.as_slice()) {
            (Some(device), conns) if conns.contains(&device) => device,
            (Some(_), _) => return Err(SessionError::NotPeer),
            (None, [only]) => *only,
            (None, _) => {
                return Err(SessionError::Invalid("that person has several devices here; name one in to_device"));
            }
        };
        if !self.mesh.connects(room, conn, device) {
            return Err(SessionError::NotPeer);
        }
        send(out, Audience::Conn(device), Event::SignalReceived { from_user, from_device: conn, signal });
        send(out, Audience::Conn(conn), Event::Succeeded { request_id });
        Ok(())
    }
}
