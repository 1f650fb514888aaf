//! The facts that decide who may talk to whom: each user's chat profile, partner programmes,
//! therapists' patients (all set by the application's backend over the service API), and the
//! blocks users set themselves.

use chrono::{DateTime, Utc};
use convene_protocol::{OrgId, UserId};
use uuid::Uuid;

use super::{Store, StoreError, with_db};

/// What a user is, for the rules of who may open a conversation with them.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, strum::IntoStaticStr, strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PersonKind {
    Mentor,
    Mentee,
    Therapist,
    Patient,
    Member,
}

/// Who may find a user (`profile_visibility`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, strum::IntoStaticStr, strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Visibility {
    Public,
    PartnersOnly,
    Private,
}

/// A row of `chat_profiles`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChatProfile {
    pub user_id: UserId,
    pub organization_id: OrgId,
    pub kind: PersonKind,
    pub chat_enabled: bool,
    pub visibility: Visibility,
}

#[derive(sqlx::FromRow)]
struct ProfileRow {
    user_id: Uuid,
    organization_id: Uuid,
    kind: String,
    chat_enabled: bool,
    profile_visibility: String,
}

impl TryFrom<ProfileRow> for ChatProfile {
    type Error = StoreError;

    fn try_from(row: ProfileRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("profile of {}: bad {what}", row.user_id));
        Ok(Self {
            user_id: UserId(row.user_id),
            organization_id: OrgId(row.organization_id),
            kind: row.kind.parse().map_err(|_| corrupt("kind"))?,
            chat_enabled: row.chat_enabled,
            visibility: row.profile_visibility.parse().map_err(|_| corrupt("visibility"))?,
        })
    }
}

impl Store {
    pub async fn chat_profile(&self, user: UserId) -> Result<Option<ChatProfile>, StoreError> {
        let row: Option<ProfileRow> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT user_id, organization_id, kind, chat_enabled, profile_visibility FROM chat_profiles WHERE user_id = $1",
            )
            .bind(user.0).fetch_optional(pool).await?
        });
        row.map(ChatProfile::try_from).transpose()
    }

    /// Makes a user known with what their token says (chat on, public), unless the backend
    /// already set their profile.
    pub async fn register_chat_profile(
        &self,
        user: UserId,
        organization: OrgId,
        kind: PersonKind,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let kind: &str = kind.into();
        with_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO chat_profiles (user_id, organization_id, kind, chat_enabled, profile_visibility, updated_at) \
                 VALUES ($1, $2, $3, true, 'public', $4) ON CONFLICT (user_id) DO NOTHING",
            )
            .bind(user.0).bind(organization.0).bind(kind).bind(at)
            .execute(pool).await?;
        });
        Ok(())
    }

    pub async fn put_chat_profile(&self, profile: &ChatProfile, at: DateTime<Utc>) -> Result<(), StoreError> {
        let kind: &str = profile.kind.into();
        let visibility: &str = profile.visibility.into();
        with_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO chat_profiles (user_id, organization_id, kind, chat_enabled, profile_visibility, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO UPDATE SET \
                 organization_id = excluded.organization_id, kind = excluded.kind, chat_enabled = excluded.chat_enabled, \
                 profile_visibility = excluded.profile_visibility, updated_at = excluded.updated_at",
            )
            .bind(profile.user_id.0).bind(profile.organization_id.0).bind(kind).bind(profile.chat_enabled)
            .bind(visibility).bind(at)
            .execute(pool).await?;
        });
        Ok(())
    }

    /// Adds `user` to a partner programme, or changes whether their membership is active.
    pub async fn put_programme_member(
        &self,
        programme: Uuid,
        user: UserId,
        organization: OrgId,
        active: bool,
    ) -> Result<(), StoreError> {
        with_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO programme_members (programme_id, user_id, organization_id, active) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (programme_id, user_id) DO UPDATE SET organization_id = excluded.organization_id, \
                 active = excluded.active",
            )
            .bind(programme).bind(user.0).bind(organization.0).bind(active)
            .execute(pool).await?;
        });
        Ok(())
    }

    /// Whether the row existed.
    pub async fn delete_programme_member(&self, programme: Uuid, user: UserId) -> Result<bool, StoreError> {
        let deleted = with_db!(&self.db, pool => {
            sqlx::query("DELETE FROM programme_members WHERE programme_id = $1 AND user_id = $2")
                .bind(programme).bind(user.0).execute(pool).await?.rows_affected()
        });
        Ok(deleted > 0)
    }

    /// Whether both users are active members of one partner programme.
    pub async fn share_programme(&self, a: UserId, b: UserId) -> Result<bool, StoreError> {
        let shared: Option<i64> = with_db!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT CAST(1 AS BIGINT) FROM programme_members x JOIN programme_members y ON x.programme_id = y.programme_id \
                 WHERE x.user_id = $1 AND y.user_id = $2 AND x.active AND y.active LIMIT 1",
            )
            .bind(a.0).bind(b.0).fetch_optional(pool).await?
        });
        Ok(shared.is_some())
    }

    pub async fn put_care(&self, therapist: UserId, patient: UserId, organization: OrgId) -> Result<(), StoreError> {
        with_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO care_relationships (therapist_id, patient_id, organization_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (therapist_id, patient_id) DO UPDATE SET organization_id = excluded.organization_id",
            )
            .bind(therapist.0).bind(patient.0).bind(organization.0)
            .execute(pool).await?;
        });
        Ok(())
    }

    /// Whether the row existed.
    pub async fn delete_care(&self, therapist: UserId, patient: UserId) -> Result<bool, StoreError> {
        let deleted = with_db!(&self.db, pool => {
            sqlx::query("DELETE FROM care_relationships WHERE therapist_id = $1 AND patient_id = $2")
                .bind(therapist.0).bind(patient.0).execute(pool).await?.rows_affected()
        });
        Ok(deleted > 0)
    }

    pub async fn cares_for(&self, therapist: UserId, patient: UserId) -> Result<bool, StoreError> {
        let found: Option<i64> = with_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM care_relationships WHERE therapist_id = $1 AND patient_id = $2")
                .bind(therapist.0).bind(patient.0).fetch_optional(pool).await?
        });
        Ok(found.is_some())
    }

    /// Blocks (`true`) or unblocks `blocked` for `blocker`.
    pub async fn set_block(
        &self,
        blocker: UserId,
        blocked: UserId,
        block: bool,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        with_db!(&self.db, pool => {
            if block {
                sqlx::query(
                    "INSERT INTO user_blocks (blocker_id, blocked_id, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (blocker_id, blocked_id) DO NOTHING",
                )
                .bind(blocker.0).bind(blocked.0).bind(at)
                .execute(pool).await?;
            } else {
                sqlx::query("DELETE FROM user_blocks WHERE blocker_id = $1 AND blocked_id = $2")
                    .bind(blocker.0).bind(blocked.0)
                    .execute(pool).await?;
            }
        });
        Ok(())
    }

    /// Whether either user blocked the other.
    pub async fn blocked_either(&self, a: UserId, b: UserId) -> Result<bool, StoreError> {
        let found: Option<i64> = with_db!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT CAST(1 AS BIGINT) FROM user_blocks WHERE (blocker_id = $1 AND blocked_id = $2) OR (blocker_id = $2 AND blocked_id = $1) LIMIT 1",
            )
            .bind(a.0).bind(b.0).fetch_optional(pool).await?
        });
        Ok(found.is_some())
    }
}
