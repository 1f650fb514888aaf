//! Admission of WebSocket connections: at most so many on this node, so many per user at once,
//! and so many new ones per user over time; and of HTTP requests, so many per user (and so many
//! with the service key) over time.
//!
//! A connection takes a [`Permit`] before its upgrade and holds it for its whole life; dropping
//! the permit gives the place back. Counting happens before the upgrade, so concurrent upgrades
//! cannot overshoot either cap. A user's connection attempts draw on a token bucket
//! ([`Budgets::connect`]), and all their connections share one frame budget
//! ([`Budgets::frames`]); both outlive the connections, so closing and reopening resets neither.
//! Their HTTP requests draw on a bucket of their own ([`Budgets::http`]); the service API's
//! callers share one ([`Budgets::service`]). Entries of users with nothing open are dropped once
//! their buckets have refilled.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use convene_protocol::UserId;
use dashmap::DashMap;

use crate::config::ConnectionLimits;
use crate::limits::{Budget, Budgets, FrameBudget, TokenBucket};

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this server holds as many connections as it may; try again later")]
    NodeFull,
    #[error("too many connections for this user")]
    UserFull,
    #[error("this user opens connections too fast; slow down")]
    TooFast,
}

/// Admissions and HTTP requests between sweeps of the per-user table for buckets that have refilled.
const SWEEP_EVERY: u64 = 4096;

/// Counts this node's connections, in total and per user.
#[derive(Debug)]
pub struct Gate {
    limits: ConnectionLimits,
    connect: Budget,
    frames: Budget,
    http: Budget,
    service_budget: Budget,
    open: AtomicUsize,
    per_user: DashMap<UserId, UserSlot>,
    /// The service API's requests, whoever holds the key.
    service: Mutex<TokenBucket>,
    attempts: AtomicU64,
}

/// One user's connections: how many are open, and their budget for opening more.
#[derive(Debug)]
struct UserSlot {
    open: u32,
    arrivals: TokenBucket,
    frames: Arc<Mutex<FrameBudget>>,
    /// HTTP requests.
    requests: TokenBucket,
}

impl UserSlot {
    fn new(gate: &Gate, now: Instant) -> Self {
        Self {
            open: 0,
            arrivals: TokenBucket::full(gate.connect, now),
            frames: Arc::new(Mutex::new(FrameBudget::full(gate.frames, now))),
            requests: TokenBucket::full(gate.http, now),
        }
    }

    /// Whether nothing is open and every budget has refilled: the entry can be forgotten.
    fn is_idle(&self, gate: &Gate, now: Instant) -> bool {
        self.open == 0
            && self.arrivals.is_full(gate.connect, now)
            && self.requests.is_full(gate.http, now)
            && self.frames.lock().unwrap_or_else(PoisonError::into_inner).is_full(gate.frames, now)
    }
}

/// One admitted connection's place; given back on drop.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
    user: UserId,
    frames: Arc<Mutex<FrameBudget>>,
}

impl Permit {
    /// The frame budget this connection shares with the user's other connections.
    pub fn frames(&self) -> Arc<Mutex<FrameBudget>> {
        self.frames.clone()
    }
}

impl Gate {
    pub fn new(limits: ConnectionLimits, budgets: &Budgets) -> Arc<Self> {
        Arc::new(Self {
            limits,
            connect: budgets.connect,
            frames: budgets.frames,
            http: budgets.http,
            service_budget: budgets.service,
            open: AtomicUsize::new(0),
            per_user: DashMap::new(),
            service: Mutex::new(TokenBucket::full(budgets.service, Instant::now())),
            attempts: AtomicU64::new(0),
        })
    }

    /// Takes a place for one more connection of `user`, if the caps and the user's budget for
    /// new connections allow it.
    pub fn admit(self: &Arc<Self>, user: UserId) -> Result<Permit, Refusal> {
        self.admit_at(user, Instant::now())
    }

    fn admit_at(self: &Arc<Self>, user: UserId, now: Instant) -> Result<Permit, Refusal> {
        self.count_attempt(now);
        let max = self.limits.max_connections;
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| (open < max).then_some(open + 1))
            .map_err(|_| Refusal::NodeFull)?;
        let mut slot = self.per_user.entry(user).or_insert_with(|| UserSlot::new(self, now));
        let refusal = if slot.open >= self.limits.max_sockets_per_user {
            Some(Refusal::UserFull)
        } else if !slot.arrivals.try_take(self.connect, now) {
            Some(Refusal::TooFast)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            drop(slot);
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(refusal);
        }
        slot.open += 1;
        let frames = slot.frames.clone();
        drop(slot);
        Ok(Permit { gate: self.clone(), user, frames })
    }

    /// Spends one HTTP request of `user`'s budget; `false` when it is spent.
    pub fn spend_request(&self, user: UserId) -> bool {
        self.spend_request_at(user, Instant::now())
    }

    fn spend_request_at(&self, user: UserId, now: Instant) -> bool {
        self.count_attempt(now);
        let mut slot = self.per_user.entry(user).or_insert_with(|| UserSlot::new(self, now));
        slot.requests.try_take(self.http, now)
    }

    /// Spends one request of the service API's budget; `false` when it is spent.
    pub fn spend_service(&self) -> bool {
        let now = Instant::now();
        self.service.lock().unwrap_or_else(PoisonError::into_inner).try_take(self.service_budget, now)
    }

    /// Counts an admission or a request, sweeping the per-user table every so many.
    fn count_attempt(&self, now: Instant) {
        if self.attempts.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(now);
        }
    }

    /// Drops the entries of users with nothing open whose budget has refilled: they would be
    /// created again exactly as they are.
    fn sweep(&self, now: Instant) {
        self.per_user.retain(|_, slot| !slot.is_idle(self, now));
    }

    /// WebSocket connections admitted and not yet ended.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let (gate, now) = (&self.gate, Instant::now());
        gate.per_user.remove_if_mut(&self.user, |_, slot| {
            slot.open = slot.open.saturating_sub(1);
            slot.is_idle(gate, now)
        });
        self.gate.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets(connect: Budget) -> Budgets {
        Budgets { connect, ..Budgets::default() }
    }

    #[test]
    fn caps_connections_per_node_and_per_user_and_gives_places_back() {
        let limits = ConnectionLimits {
            max_connections: 3,
            max_sockets_per_user: 2,
            max_header_bytes: 0,
            ..ConnectionLimits::default()
        };
        let gate = Gate::new(limits, &budgets(Budget::new(100.0, 100)));
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
        assert_eq!(gate.per_user.get(&alice).map(|slot| slot.open), Some(2));
    }

    #[test]
    fn reconnecting_draws_on_a_budget_that_closing_does_not_reset() {
        let limits = ConnectionLimits {
            max_connections: 100,
            max_sockets_per_user: 10,
            max_header_bytes: 0,
            ..ConnectionLimits::default()
        };
        let gate = Gate::new(limits, &budgets(Budget::new(1.0, 3)));
        let (alice, bob) = (UserId::new_v4(), UserId::new_v4());
        let start = Instant::now();
        for _ in 0..3 {
            let permit = gate.admit_at(alice, start).expect("within the burst");
            drop(permit);
        }
        assert_eq!(gate.admit_at(alice, start).err(), Some(Refusal::TooFast));
        let bob_in = gate.admit_at(bob, start).expect("each user has their own budget");
        let later = start + std::time::Duration::from_millis(1100);
        let alice_in = gate.admit_at(alice, later).expect("one more a second");
        assert_eq!(gate.open(), 2, "refusals hold no place");
        drop((bob_in, alice_in));
    }

    #[test]
    fn http_requests_draw_on_a_budget_per_user_that_refills() {
        let gate = Gate::new(ConnectionLimits::default(), &Budgets { http: Budget::new(1.0, 2), ..Budgets::default() });
        let (alice, bob) = (UserId::new_v4(), UserId::new_v4());
        let start = Instant::now();
        let taken = (0..5).filter(|_| gate.spend_request_at(alice, start)).count();
        assert_eq!(taken, 2, "the burst");
        assert!(gate.spend_request_at(bob, start), "each user has their own budget");
        let later = start + std::time::Duration::from_millis(1100);
        assert!(gate.spend_request_at(alice, later), "one more a second");
        assert!(!gate.spend_request_at(alice, later));
        gate.sweep(later + std::time::Duration::from_secs(3));
        assert!(gate.per_user.is_empty(), "forgotten once refilled");
    }

    #[test]
    fn idle_users_are_forgotten_once_their_budget_refills() {
        let limits = ConnectionLimits {
            max_connections: 100,
            max_sockets_per_user: 10,
            max_header_bytes: 0,
            ..ConnectionLimits::default()
        };
        let gate = Gate::new(limits, &budgets(Budget::new(1.0, 2)));
        let start = Instant::now();
        let users: Vec<UserId> = (0..5).map(|_| UserId::new_v4()).collect();
        for user in &users {
            drop(gate.admit_at(*user, start));
        }
        assert_eq!(gate.per_user.len(), 5, "remembered while their budget refills");
        gate.sweep(start + std::time::Duration::from_secs(2));
        assert!(gate.per_user.is_empty());
    }
}
