//! Creating sessions: the one code path behind `POST /v1/sessions` and `create_session`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use convene_protocol::{ErrorCode, SessionId, SessionRole, SessionStatus, SessionType, UserId};

use crate::auth::Identity;
use crate::rooms::valid_room_name;
use crate::store::{ParticipantRecord, SessionRecord, Store, StoreError};

/// Most invitees one session may name.
pub const MAX_INVITEES: usize = 1_000;

/// What a host asks for.
#[derive(Clone, Debug)]
pub struct NewSessionSpec {
    pub session_type: SessionType,
    pub room_name: Option<String>,
    pub invitees: Vec<UserId>,
    pub lobby_enabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("only therapists, mentors and admins may create sessions")]
    NotAHost,
    #[error("{0}")]
    Invalid(&'static str),
    #[error("that room name is taken")]
    RoomNameTaken,
    #[error("the session could not be stored")]
    Store(#[source] StoreError),
}

impl CreateError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotAHost => ErrorCode::Forbidden,
            Self::Invalid(_) => ErrorCode::Invalid,
            Self::RoomNameTaken => ErrorCode::Conflict,
            Self::Store(_) => ErrorCode::Unavailable,
        }
    }
}

/// Validates and stores a new session created by `creator`, waiting at most `bound` for the
/// database.
pub async fn create_session(
    store: &Store,
    creator: &Identity,
    spec: NewSessionSpec,
    instant_ttl: Duration,
    bound: Duration,
    now: DateTime<Utc>,
) -> Result<SessionRecord, CreateError> {
    let (session, participants) = plan(creator, spec, instant_ttl, now)?;
    match Store::within(bound, store.insert_session(&session, &participants)).await {
        Ok(()) => Ok(session),
        Err(StoreError::Conflict) => Err(CreateError::RoomNameTaken),
        Err(err) => Err(CreateError::Store(err)),
    }
}

/// The rows a valid request becomes.
fn plan(
    creator: &Identity,
    spec: NewSessionSpec,
    instant_ttl: Duration,
    now: DateTime<Utc>,
) -> Result<(SessionRecord, Vec<ParticipantRecord>), CreateError> {
    if !creator.role.can_host() {
        return Err(CreateError::NotAHost);
    }
    let id = SessionId::new_v4();
    let room_name = match spec.room_name {
        Some(name) => {
            valid_room_name(&name).ok_or(CreateError::Invalid("room_name must be 1 to 100 printable characters"))?
        }
        None => format!("session-{}", id.0.simple()),
    };
    if spec.invitees.len() > MAX_INVITEES {
        return Err(CreateError::Invalid("too many invitees (at most 1000)"));
    }
    if spec.session_type == SessionType::Appointment && spec.invitees.is_empty() {
        return Err(CreateError::Invalid("an appointment session names at least one invitee"));
    }
    let expires_at = (spec.session_type == SessionType::Instant)
        .then(|| chrono::Duration::from_std(instant_ttl).ok().map(|ttl| now + ttl))
        .flatten();
    let session = SessionRecord {
        id,
        organization_id: creator.organization_id,
        session_type: spec.session_type,
        status: SessionStatus::Scheduled,
        room_name,
        created_by: creator.user_id,
        lobby_enabled: spec.lobby_enabled || spec.session_type == SessionType::Appointment,
        created_at: now,
        started_at: None,
        ended_at: None,
        expires_at,
    };
    let mut participants = vec![ParticipantRecord {
        user_id: creator.user_id,
        role: SessionRole::Host,
        invited: false,
        joined_at: None,
        left_at: None,
        removed_at: None,
    }];
    let mut invitees = spec.invitees;
    invitees.sort();
    invitees.dedup();
    participants.extend(invitees.into_iter().filter(|user| *user != creator.user_id).map(|user_id| {
        ParticipantRecord {
            user_id,
            role: SessionRole::Participant,
            invited: true,
            joined_at: None,
            left_at: None,
            removed_at: None,
        }
    }));
    Ok((session, participants))
}
