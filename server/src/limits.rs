//! Budgets: one mechanism for everything a client can make the server fan out or write.
//!
//! Each kind of spending ([`Spend`]) has a [`Budget`], a sustained rate with a burst above it,
//! kept as a token bucket per user and session (per connection for raw frames). A request that
//! finds its bucket empty is refused with `rate_limited` and changes nothing; a connection that
//! keeps sending past its frame budget is closed (4029). Every budget is configurable
//! (`CONVENE_LIMIT_<KIND>=rate/burst`, see `docs/operations.md`).

use std::collections::HashMap;
use std::hash::Hash;
use std::str::FromStr;
use std::time::Instant;

use strum::{EnumIter, IntoStaticStr};

/// A sustained rate (per second) and a burst allowed above it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    pub per_sec: f64,
    pub burst: u32,
}

impl Budget {
    pub const fn new(per_sec: f64, burst: u32) -> Self {
        Self { per_sec, burst }
    }
}

impl FromStr for Budget {
    type Err = String;

    /// Parses `rate/burst`, as in `5/10` or `0.5/3`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (rate, burst) = text.split_once('/').ok_or_else(|| format!("{text:?} is not rate/burst, like 5/10"))?;
        let per_sec = parse_rate(rate)?;
        let burst: u32 = burst.trim().parse().map_err(|_| format!("{burst:?} is not a whole burst"))?;
        if burst == 0 {
            return Err(format!("{text:?}: the burst must be at least 1"));
        }
        Ok(Self { per_sec, burst })
    }
}

/// Parses a rate per second: a number, 0 or more (0 allows the burst and nothing after it).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(per_sec) if per_sec.is_finite() && per_sec >= 0.0 => Ok(per_sec),
        Ok(_) => Err(format!("{text:?}: a rate per second must be a number, 0 or more")),
        Err(_) => Err(format!("{text:?} is not a rate per second")),
    }
}

/// What a budget is spent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Spend {
    /// Chat messages posted, edited or deleted (the chat limits of `ChatLimits`).
    Chat,
    /// Changes of typing state (repeats are coalesced and cost nothing).
    Typing,
    /// Joins of a session, reconnects included.
    Join,
    /// Presence status changes.
    Status,
    /// Host broadcasts to every room.
    Broadcast,
    /// Help requests from breakout rooms.
    Help,
    /// Host commands and changes of room: admitting, denying, the lobby, rooms, plans, moves,
    /// picking a room, closing, ending.
    Command,
    /// History and roster pages read.
    History,
    /// WebRTC signals relayed to another device (offers, answers, ICE candidates).
    Signal,
}

/// The budgets of everything a member does in a session, and of a connection's raw frames.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budgets {
    pub typing: Budget,
    /// Typing announcements in one room, whoever types: bounds the fan-out of a busy room.
    pub room_typing: Budget,
    pub join: Budget,
    pub status: Budget,
    pub broadcast: Budget,
    pub help: Budget,
    pub command: Budget,
    pub history: Budget,
    /// Signals: a device entering a room of a dozen exchanges an offer or answer and a handful
    /// of candidates with each of the others at once.
    pub signal: Budget,
    /// Frames of any kind one user may send to a node, over all their connections.
    pub frames: Budget,
    /// WebSocket connections one user may open on a node, reconnects included.
    pub connect: Budget,
    /// Requests to the HTTP API one user may make of a node: sessions created, reports read,
    /// ICE servers fetched.
    pub http: Budget,
    /// Requests to the service API a node takes, from every holder of the service key together.
    pub service: Budget,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            typing: Budget::new(2.0, 6),
            room_typing: Budget::new(10.0, 20),
            join: Budget::new(0.5, 10),
            status: Budget::new(1.0, 5),
            broadcast: Budget::new(0.5, 5),
            help: Budget::new(0.2, 3),
            command: Budget::new(20.0, 60),
            history: Budget::new(5.0, 20),
            signal: Budget::new(20.0, 200),
            frames: Budget::new(50.0, 200),
            connect: Budget::new(1.0, 10),
            http: Budget::new(5.0, 30),
            service: Budget::new(200.0, 1000),
        }
    }
}

impl Budget {
    /// How many frames beyond its budget a connection may send before it is closed: a quarter
    /// of the burst, refilled at a tenth of the rate. A client that slips over now and then is
    /// told `rate_limited`; one that keeps sending regardless is closed within seconds.
    pub fn strikes(self) -> Self {
        Self::new(self.per_sec / 10.0, (self.burst / 4).max(1))
    }
}

impl Budgets {
    /// The budget of `spend`, `chat` being given by the chat limits.
    pub fn of(&self, spend: Spend, chat: Budget) -> Budget {
        match spend {
            Spend::Chat => chat,
            Spend::Typing => self.typing,
            Spend::Join => self.join,
            Spend::Status => self.status,
            Spend::Broadcast => self.broadcast,
            Spend::Help => self.help,
            Spend::Command => self.command,
            Spend::History => self.history,
            Spend::Signal => self.signal,
        }
    }
}

/// A token bucket: `burst` at once, refilled at the budget's rate.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn full(budget: Budget, now: Instant) -> Self {
        Self { tokens: f64::from(budget.burst), updated: now }
    }

    /// Whether the bucket would be full at `now`.
    pub fn is_full(&self, budget: Budget, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * budget.per_sec >= f64::from(budget.burst)
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, budget: Budget, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * budget.per_sec).min(f64::from(budget.burst));
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What may happen to a user's next frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameVerdict {
    /// Within the budget: handle it.
    Accept,
    /// Over the budget: answer `rate_limited` and drop it.
    Refuse,
    /// Over the budget and out of refusals: the client is not listening; close it.
    Close,
}

/// A user's frame budget on a node, shared by all their connections so that reconnecting does
/// not refill it: frames, and refusals (see [`Budget::strikes`]).
#[derive(Debug)]
pub struct FrameBudget {
    frames: TokenBucket,
    strikes: TokenBucket,
}

impl FrameBudget {
    pub fn full(budget: Budget, now: Instant) -> Self {
        Self { frames: TokenBucket::full(budget, now), strikes: TokenBucket::full(budget.strikes(), now) }
    }

    /// Spends one frame of `budget`.
    pub fn take(&mut self, budget: Budget, now: Instant) -> FrameVerdict {
        if self.frames.try_take(budget, now) {
            FrameVerdict::Accept
        } else if self.strikes.try_take(budget.strikes(), now) {
            FrameVerdict::Refuse
        } else {
            FrameVerdict::Close
        }
    }

    /// Whether both buckets would be full at `now`: forgetting it changes nothing.
    pub fn is_full(&self, budget: Budget, now: Instant) -> bool {
        self.frames.is_full(budget, now) && self.strikes.is_full(budget.strikes(), now)
    }
}

/// Buckets by key (a user and what they spend on), created full on first use.
#[derive(Debug)]
pub struct Ledger<K> {
    buckets: HashMap<K, TokenBucket>,
}

impl<K> Default for Ledger<K> {
    fn default() -> Self {
        Self { buckets: HashMap::new() }
    }
}

impl<K: Eq + Hash> Ledger<K> {
    /// Spends one unit of `budget` under `key`; `false` when the bucket is empty.
    pub fn try_spend(&mut self, key: K, budget: Budget, now: Instant) -> bool {
        self.buckets.entry(key).or_insert_with(|| TokenBucket::full(budget, now)).try_take(budget, now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let budget = Budget::new(2.0, 3);
        let start = Instant::now();
        let mut ledger = Ledger::default();
        let taken = (0..10).filter(|_| ledger.try_spend("alice", budget, start)).count();
        assert_eq!(taken, 3, "the burst");
        assert!(ledger.try_spend("bob", budget, start), "another key has its own bucket");
        let later = start + Duration::from_millis(1000);
        let refilled = (0..10).filter(|_| ledger.try_spend("alice", budget, later)).count();
        assert_eq!(refilled, 2, "two a second");
    }

    #[test]
    fn budgets_parse_from_rate_and_burst() {
        assert_eq!("5/10".parse(), Ok(Budget::new(5.0, 10)));
        assert_eq!("0.5/3".parse(), Ok(Budget::new(0.5, 3)));
        for bad in ["5", "x/3", "5/0", "-1/3", "NaN/3", "inf/3", "5/2.5"] {
            assert!(bad.parse::<Budget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_rate_is_a_number_of_zero_or_more() {
        assert_eq!(super::parse_rate("10"), Ok(10.0));
        assert_eq!(super::parse_rate(" 0.5 "), Ok(0.5));
        assert_eq!(super::parse_rate("0"), Ok(0.0));
        for bad in ["-1", "NaN", "inf", "-inf", "ten", ""] {
            assert!(super::parse_rate(bad).is_err(), "{bad}");
        }
    }
}
