//! Catching up after messages between nodes were lost (a gap on the bus).
//!
//! A running inbox is told to read what it missed from the store. A waiting inbox has no task
//! to tell, and most inboxes wait: starting every one of them would give every idle user a
//! task and a mailbox until they leave. So waiting inboxes are checked here, a few at a time.
//! One whose conversations moved past where its devices are starts its task, which sends
//! them what they missed. The others only send their devices the notification counts, which is
//! all that a lost notification changes for a user who was sent nothing else.
//!
//! One pass runs at a time: a gap during a pass (Redis flapping) asks for one more pass after
//! it, over the inboxes waiting then, rather than for another pass beside it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use convene_protocol::ServerMessage;
use futures_util::StreamExt as _;
use tracing::{debug, warn};

use super::hub::position_in;
use super::{HubCommand, Inbox, Inboxes, State};
use crate::outbound::Frame;
use crate::store::Store;

/// How many waiting inboxes are checked against the store at once. Each check is one or two
/// reads, and a node may hold thousands of idle users: a few at a time keeps the pool free for
/// requests.
const CATCH_UP_CONCURRENCY: usize = 8;

/// What a gap asks of one inbox.
enum Need {
    /// Nothing: it ended.
    Nothing,
    /// Its task runs and was told.
    Told,
    /// It waits: it is checked against the store.
    Check,
}

/// Whether a pass over the waiting inboxes runs, and whether another is due after it.
#[derive(Debug, Default)]
pub(super) struct Passes {
    running: bool,
    again: bool,
}

impl Passes {
    /// A gap: `true` when the caller is to run a pass now; otherwise one more is due after the
    /// pass that runs.
    fn start(&mut self) -> bool {
        if self.running {
            self.again = true;
            return false;
        }
        self.running = true;
        true
    }

    /// A pass ended: `true` when another is due, which the caller runs.
    fn finish(&mut self) -> bool {
        self.running = std::mem::take(&mut self.again);
        self.running
    }
}

impl Inboxes {
    /// Messages between nodes may have been lost: every inbox here catches up from the store.
    pub fn resync_all(self: &Arc<Self>) {
        let mut waiting = self.tell_running();
        if waiting.is_empty() || !self.passes().start() {
            return;
        }
        let (inboxes, shutdown) = (self.clone(), self.shutdown.clone());
        self.tracker.spawn(async move {
            loop {
                debug!(inboxes = waiting.len(), "checking waiting inboxes after lost messages");
                let checks = futures_util::stream::iter(std::mem::take(&mut waiting))
                    .for_each_concurrent(CATCH_UP_CONCURRENCY, |inbox| inbox.catch_up(&inboxes));
                tokio::select! {
                    () = checks => {}
                    () = shutdown.cancelled() => {
                        debug!("stopped checking waiting inboxes: shutting down");
                        return;
                    }
                }
                if !inboxes.passes().finish() {
                    return;
                }
                // The running ones were told at their gap.
                waiting = inboxes.all().into_iter().filter(|inbox| inbox.is_waiting()).collect();
            }
        });
    }

    /// Tells every running inbox to catch up, and returns the waiting ones.
    fn tell_running(&self) -> Vec<Arc<Inbox>> {
        self.all().into_iter().filter(|inbox| matches!(inbox.tell_to_resync(), Need::Check)).collect()
    }

    /// Every inbox, collected first: starting an inbox locks it, and an inbox that ends locks
    /// itself, then the registry.
    fn all(&self) -> Vec<Arc<Inbox>> {
        self.users.iter().map(|inbox| inbox.clone()).collect()
    }

    fn passes(&self) -> std::sync::MutexGuard<'_, Passes> {
        self.catch_up.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inbox {
    fn is_waiting(&self) -> bool {
        matches!(*self.state(), State::Waiting(_))
    }

    /// Tells a running inbox to catch up; a waiting one is to be checked.
    fn tell_to_resync(&self) -> Need {
        match &*self.state() {
            State::Running(tx) => {
                if tx.try_send(HubCommand::Resync).is_err() {
                    // Full (it reads the store when it drains) or ended (nothing to do).
                    self.behind.store(true, Ordering::Release);
                }
                Need::Told
            }
            State::Waiting(_) => Need::Check,
            State::Ended => Need::Nothing,
        }
    }

    /// Checks a waiting inbox against the store (see the module's documentation).
    async fn catch_up(self: Arc<Self>, inboxes: &Arc<Inboxes>) {
        if matches!(self.tell_to_resync(), Need::Nothing | Need::Told) {
            // It ended, or it started since the gap and was told now.
            return;
        }
        let positions = match Store::within(inboxes.db_timeout, inboxes.store.conversation_positions(self.user)).await {
            Ok(positions) => positions,
            Err(err) => {
                warn!(error = %err, user_id = %self.user, "could not catch up after lost messages");
                return;
            }
        };
        let missed = match &mut *self.state() {
            State::Ended => return,
            // Started meanwhile: its task reads the store itself.
            State::Running(_) => true,
            State::Waiting(waiting) => match &mut waiting.positions {
                // Never read: the task reads them, then what it missed.
                None => true,
                Some(known) => {
                    let missed = positions.iter().any(|(id, last)| *last > position_in(known, true, *id, *last));
                    if !missed {
                        for (id, last) in positions {
                            known.entry(id).or_insert(last);
                        }
                    }
                    missed
                }
            },
        };
        if missed {
            self.resync_now(inboxes);
            return;
        }
        let counts = match Store::within(inboxes.db_timeout, inboxes.store.notification_counts(self.user)).await {
            Ok(counts) => counts,
            Err(err) => {
                warn!(error = %err, user_id = %self.user, "could not refresh notification counts");
                return;
            }
        };
        let Some(frame) = Frame::encode(&ServerMessage::NotificationCounts { request_id: None, counts }) else {
            return;
        };
        let started = match &*self.state() {
            State::Waiting(waiting) => {
                for device in &waiting.devices {
                    if !device.try_send(frame.clone()) {
                        debug!(conn = %device.conn_id, "notification counts for a device that is gone");
                    }
                }
                false
            }
            State::Running(_) => true,
            State::Ended => false,
        };
        if started {
            // Its task took over since the read: it reads the counts itself.
            self.resync_now(inboxes);
        }
    }

    /// Starts the task if it waits, and has it read what it missed.
    fn resync_now(self: &Arc<Self>, inboxes: &Arc<Inboxes>) {
        let Some(tx) = self.mailbox(inboxes) else {
            debug!(user_id = %self.user, "an inbox that ended needs no catching up");
            return;
        };
        if tx.try_send(HubCommand::Resync).is_err() {
            self.behind.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Passes;

    #[test]
    fn one_pass_runs_at_a_time_and_gaps_during_it_ask_for_one_more() {
        let mut passes = Passes::default();
        assert!(passes.start(), "the first gap starts a pass");
        assert!(!passes.start(), "a gap during it does not start another beside it");
        assert!(!passes.start(), "nor does a third");
        assert!(passes.finish(), "one more pass follows, for both");
        assert!(!passes.start(), "a gap during that one asks again");
        assert!(passes.finish());
        assert!(!passes.finish(), "no gap during the last: done");
        assert!(passes.start(), "the next gap starts a pass again");
    }
}
