//! Attendance: how long each person spent in each room, computed from the transitions alone.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use convene_protocol::{RoomId, UserId};

use crate::store::TransitionRecord;

/// Time one person spent in one room.
#[derive(Clone, Debug, PartialEq)]
pub struct Attendance {
    pub user: UserId,
    pub room: RoomId,
    pub seconds: f64,
}

/// Replays `transitions` (in order) and adds up each person's time per room; someone still in a
/// room is counted until `now`.
pub fn attendance(transitions: &[TransitionRecord], now: DateTime<Utc>) -> Vec<Attendance> {
    let mut since: HashMap<UserId, (RoomId, DateTime<Utc>)> = HashMap::new();
    let mut totals: BTreeMap<(UserId, RoomId), f64> = BTreeMap::new();
    let mut add = |user: UserId, room: RoomId, from: DateTime<Utc>, to: DateTime<Utc>| {
        let seconds = (to - from).num_milliseconds().max(0) as f64 / 1000.0;
        *totals.entry((user, room)).or_default() += seconds;
    };
    for transition in transitions {
        if let Some((room, from)) = since.remove(&transition.user_id) {
            add(transition.user_id, room, from, transition.at);
        }
        if let Some(room) = transition.to_room {
            since.insert(transition.user_id, (room, transition.at));
        }
    }
    for (user, (room, from)) in since {
        add(user, room, from, now);
    }
    totals.into_iter().map(|((user, room), seconds)| Attendance { user, room, seconds }).collect()
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use convene_protocol::SessionId;
    use uuid::Uuid;

    use super::*;
    use crate::store::TransitionType;

    #[test]
    fn adds_up_time_per_room_and_counts_open_stays_until_now() {
        let start = Utc::now();
        let at = |secs| start + Duration::seconds(secs);
        let (user, main, breakout) = (UserId(Uuid::new_v4()), RoomId(Uuid::new_v4()), RoomId(Uuid::new_v4()));
        let row = |from, to, transition_type, secs| TransitionRecord {
            session_id: SessionId(main.0),
            user_id: user,
            from_room: from,
            to_room: to,
            transition_type,
            at: at(secs),
        };
        let transitions = [
            row(None, Some(main), TransitionType::Join, 0),
            row(Some(main), Some(breakout), TransitionType::Move, 60),
            row(Some(breakout), Some(main), TransitionType::Move, 660),
            row(Some(main), None, TransitionType::Leave, 700),
            row(None, Some(main), TransitionType::Join, 1000),
        ];
        let mut got = attendance(&transitions, at(1030));
        got.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        let summary: Vec<(RoomId, f64)> = got.iter().map(|a| (a.room, a.seconds)).collect();
        assert_eq!(summary, [(main, 60.0 + 40.0 + 30.0), (breakout, 600.0)]);
    }
}
