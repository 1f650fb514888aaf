//! Stable error codes. Clients branch on these; the accompanying text is for people and may change.

use serde::{Deserialize, Serialize};

/// Why a request failed. Codes are stable across releases; new ones may be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The token is missing, invalid or expired.
    Unauthorized,
    /// The caller is known but may not do this (wrong role, not a member, not invited).
    Forbidden,
    /// No such session, room or message, or one the caller may not know about.
    NotFound,
    /// The request is malformed: bad JSON, unknown type, wrong field types, invalid values.
    Invalid,
    /// A field is over its size limit.
    TooLarge,
    /// The caller sends faster than allowed; retry later.
    RateLimited,
    /// The request conflicts with the current state (duplicate name, concurrent change).
    Conflict,
    /// The session has ended or expired.
    Gone,
    /// A room is at capacity.
    Full,
    /// A dependency (the database) is unavailable; the request was not carried out.
    Unavailable,
    /// The server failed unexpectedly; the request may be retried.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Invalid => "invalid",
            Self::TooLarge => "too_large",
            Self::RateLimited => "rate_limited",
            Self::Conflict => "conflict",
            Self::Gone => "gone",
            Self::Full => "full",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}
