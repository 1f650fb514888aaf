//! The audit trail: every host action is recorded as one row, staged with the change it
//! records so that both commit in the same transaction or neither does.

use convene_protocol::{RequestId, RoomId, UserId};
use serde_json::{Value, json};

use super::{Now, SessionState};
use crate::store::{AuditAction, AuditRecord, SessionWrite};

/// A host action about to be recorded: who did what, to whom, with what else it names.
#[derive(Debug)]
pub(super) struct Action {
    actor: UserId,
    action: AuditAction,
    target: Option<UserId>,
    detail: Value,
}

impl Action {
    pub(super) fn new(actor: UserId, action: AuditAction) -> Self {
        Self { actor, action, target: None, detail: json!({}) }
    }

    /// The one person the action is on.
    pub(super) fn on(mut self, target: UserId) -> Self {
        self.target = Some(target);
        self
    }

    /// What else the action names, as a JSON object.
    pub(super) fn with(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

impl SessionState {
    /// The audit row of `action`, taken under `request_id`.
    pub(super) fn audit_record(&self, action: Action, request_id: &Option<RequestId>, now: Now) -> AuditRecord {
        AuditRecord {
            session_id: self.session.id,
            actor_id: action.actor,
            action: action.action,
            target_user_id: action.target,
            request_id: request_id.as_ref().map(|id| id.as_str().to_owned()),
            detail: action.detail,
            at: now.wall,
        }
    }

    /// [`Self::audit_record`] as a row change to stage.
    pub(super) fn audited(&self, action: Action, request_id: &Option<RequestId>, now: Now) -> SessionWrite {
        SessionWrite::Audit(self.audit_record(action, request_id, now))
    }

    /// The moves a host asked for, as an audit row: the person when there is one, and every
    /// move with where it starts.
    pub(super) fn audited_moves(
        &self,
        actor: UserId,
        action: AuditAction,
        moves: &[(UserId, RoomId)],
        request_id: &Option<RequestId>,
        now: Now,
    ) -> SessionWrite {
        let listed: Vec<Value> = moves
            .iter()
            .map(|(user, to)| {
                let from = self.presence.get(*user).map(|m| m.room);
                json!({"user_id": user, "from_room_id": from, "to_room_id": to})
            })
            .collect();
        let mut record = Action::new(actor, action).with(json!({ "moves": listed }));
        if let [(user, _)] = moves {
            record = record.on(*user);
        }
        self.audited(record, request_id, now)
    }
}
