//! The claims of an access token, shaped like Supabase Auth's so that apps already on Supabase can
//! pass their users' tokens straight through.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The audience Supabase Auth puts in tokens of signed-in users.
pub const SUPABASE_AUDIENCE: &str = "authenticated";

/// A user's role in the application, from `app_metadata.role`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Patient,
    Therapist,
    Mentor,
    Mentee,
    Admin,
    Support,
}

impl Role {
    /// Roles that may create and host sessions.
    pub fn can_host(self) -> bool {
        matches!(self, Self::Therapist | Self::Mentor | Self::Admin)
    }
}

/// `app_metadata`: set by the backend, never by the user, so it may be used for authorization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppMetadata {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<Uuid>,
}

/// The claims Convene reads. Other claims (`user_metadata`, `email`, ...) are ignored: in
/// particular `user_metadata` is written by users themselves and never used for authorization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// Supabase's database role: only `authenticated` is accepted (`anon` and `service_role`
    /// tokens are valid JWTs too, and must not pass as a user).
    pub role: String,
    pub aud: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    pub app_metadata: AppMetadata,
}
