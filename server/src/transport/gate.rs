//! Admission of WebSocket connections: at most so many on this node, and so many per user.
//!
//! A connection takes a [`Permit`] before its upgrade and holds it for its whole life; dropping
//! the permit gives the place back. Counting happens before the upgrade, so concurrent upgrades
//! cannot overshoot either cap.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use convene_protocol::UserId;
use dashmap::DashMap;

use crate::config::ConnectionLimits;

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this server holds as many connections as it may; try again later")]
    NodeFull,
    #[error("too many connections for this user")]
    UserFull,
}

impl Refusal {
    /// The HTTP status the upgrade is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::NodeFull => StatusCode::SERVICE_UNAVAILABLE,
            Self::UserFull => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// Counts this node's connections, in total and per user.
#[derive(Debug)]
pub struct Gate {
    limits: ConnectionLimits,
    open: AtomicUsize,
    per_user: DashMap<UserId, u32>,
}

/// One admitted connection's place; given back on drop.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
    user: UserId,
}

impl Gate {
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self { limits, open: AtomicUsize::new(0), per_user: DashMap::new() })
    }

    /// Takes a place for one more connection of `user`, if both caps allow it.
    pub fn admit(self: &Arc<Self>, user: UserId) -> Result<Permit, Refusal> {
        let max = self.limits.max_connections;
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| (open < max).then_some(open + 1))
            .map_err(|_| Refusal::NodeFull)?;
        let mut count = self.per_user.entry(user).or_insert(0);
        if *count >= self.limits.max_sockets_per_user {
            drop(count);
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::UserFull);
        }
        *count += 1;
        Ok(Permit { gate: self.clone(), user })
    }

    /// WebSocket connections admitted and not yet ended.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.per_user.remove_if_mut(&self.user, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
        self.gate.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_connections_per_node_and_per_user_and_gives_places_back() {
        let gate = Gate::new(ConnectionLimits { max_connections: 3, max_sockets_per_user: 2, max_header_bytes: 0 });
        let (alice, bob) = (UserId::new_v4(), UserId::new_v4());
        let a1 = gate.admit(alice).expect("first");
        let _a2 = gate.admit(alice).expect("second");
        assert_eq!(gate.admit(alice).err(), Some(Refusal::UserFull));
        let _b1 = gate.admit(bob).expect("bob");
        assert_eq!(gate.admit(bob).err(), Some(Refusal::NodeFull));
        assert_eq!(gate.open(), 3);
        drop(a1);
        assert_eq!(gate.open(), 2);
        let _a3 = gate.admit(alice).expect("a place was given back");
        assert_eq!(gate.per_user.get(&alice).map(|c| *c), Some(2));
    }
}
