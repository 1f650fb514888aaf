//! Video between browsers: the ICE servers a device uses, the peer connections the server tells
//! each device to open and close as people change rooms, and the signaling a device sends to
//! another device of its room.
//!
//! Video is peer to peer: every device in a room connects to every other person's devices there
//! (never to its own person's other devices). The server decides who connects to whom
//! (`peers_changed`) and which side of each pair makes the offer ([`Peer::offer`]); the devices
//! only carry out what they are told and exchange [`Signal`]s through the server.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{ConnId, RequestId, SessionId, UserId};

/// One STUN or TURN server, shaped as the browser's `RTCIceServer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct IceServer {
    pub urls: Vec<String>,
    /// For TURN: `expiry:user_id`, where expiry is in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// For TURN: base64(HMAC-SHA1(shared secret, username)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The ICE servers a device gives its peer connections (`GET /v1/ice-servers`, and `joined`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct IceServers {
    pub ice_servers: Vec<IceServer>,
    /// When the TURN credentials stop being accepted; none without TURN. Fetch new ones before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Another person's device in the same room, to open a peer connection with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Peer {
    pub user_id: UserId,
    pub device: ConnId,
    /// Whether this device makes the offer. Of two devices, the one with the smaller id offers
    /// (ids compare by node, then by number): both ends know it without asking each other.
    pub offer: bool,
}

/// Another person's device whose peer connection must close.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PeerGone {
    pub user_id: UserId,
    pub device: ConnId,
}

/// What one device tells another to set up their connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Signal {
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    /// A trickled ICE candidate, as `RTCIceCandidateInit`; an empty `candidate` ends the
    /// candidates of its media section.
    IceCandidate {
        candidate: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_mid: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_m_line_index: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username_fragment: Option<String>,
    },
}

impl Signal {
    /// Largest session description accepted, in bytes: an audio and video offer with every
    /// codec a browser knows is under 10 KiB.
    pub const MAX_SDP_BYTES: usize = 16 * 1024;
    /// Largest ICE candidate line (and its media id and fragment), in bytes.
    pub const MAX_CANDIDATE_BYTES: usize = 512;

    /// Checks the payload's size.
    pub fn validate(&self) -> Result<(), &'static str> {
        match self {
            Self::Offer { sdp } | Self::Answer { sdp } => {
                if sdp.len() > Self::MAX_SDP_BYTES {
                    return Err("the session description is too large (at most 16 KiB)");
                }
            }
            Self::IceCandidate { candidate, sdp_mid, username_fragment, .. } => {
                let parts = [Some(candidate), sdp_mid.as_ref(), username_fragment.as_ref()];
                if parts.into_iter().flatten().any(|part| part.len() > Self::MAX_CANDIDATE_BYTES) {
                    return Err("the ICE candidate is too large (at most 512 bytes a field)");
                }
            }
        }
        Ok(())
    }
}

/// Sends a [`Signal`] to a device of another member of the caller's room. `device` may be left
/// out when the member has a single device in the room.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SendSignal {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub to_user_id: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_device: Option<ConnId>,
    /// Boxed: a candidate's fields would make every session request as large.
    pub signal: Box<Signal>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_tagged_and_size_checked() {
        let candidate: Signal = serde_json::from_str(
            r#"{"type":"ice_candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdp_mid":"0","sdp_m_line_index":0}"#,
        )
        .expect("a candidate parses");
        assert!(matches!(&candidate, Signal::IceCandidate { sdp_m_line_index: Some(0), .. }));
        assert_eq!(candidate.validate(), Ok(()));
        let huge = Signal::Offer { sdp: "v=0\r\n".repeat(Signal::MAX_SDP_BYTES) };
        assert!(huge.validate().is_err());
        let long = Signal::IceCandidate {
            candidate: String::new(),
            sdp_mid: Some("m".repeat(Signal::MAX_CANDIDATE_BYTES + 1)),
            sdp_m_line_index: None,
            username_fragment: None,
        };
        assert!(long.validate().is_err());
    }
}
