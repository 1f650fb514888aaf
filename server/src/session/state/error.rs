//! Why a command was refused, and the stable code each reason maps to.

use convene_protocol::ErrorCode;

use super::*;

/// Why a command was refused. The text is safe to show to the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("session not found")]
    NotFound,
    #[error("you are not in this session")]
    NotMember,
    #[error("only hosts may do this")]
    NotHost,
    #[error("you are not invited to this session")]
    NotInvited,
    #[error("the session has ended")]
    Ended,
    #[error("this connection already joined the session")]
    AlreadyJoined,
    #[error("no such room in this session")]
    NoSuchRoom,
    #[error("you are not in that room")]
    NotInRoom,
    #[error("no such user in the lobby")]
    NotWaiting,
    #[error("no such message")]
    NoSuchMessage,
    #[error("only the sender may change this message")]
    NotSender,
    #[error("{0}")]
    Invalid(&'static str),
    #[error("the message body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("you are sending messages too fast")]
    RateLimited,
    #[error("that room is full")]
    Full,
    #[error("that person is not in the session")]
    NotPresent,
    #[error("that device is not connected to yours: it is not in your room, or the room is too large")]
    NotPeer,
    #[error("{0}")]
    NotAllowed(&'static str),
    #[error("a host turned you away; you may ask again later")]
    RecentlyDenied,
    #[error("nobody asked for help")]
    NoHelpRequest,
    #[error("{0}")]
    Conflict(&'static str),
    #[error("the database is unavailable; retry")]
    Unavailable,
    #[error("the session is busy; retry")]
    Busy,
    #[error("the server could not carry out the request")]
    Internal,
}

impl SessionError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound | Self::NoSuchRoom | Self::NotWaiting | Self::NoSuchMessage => ErrorCode::NotFound,
            Self::NotMember | Self::NotHost | Self::NotInvited | Self::NotInRoom | Self::NotSender => {
                ErrorCode::Forbidden
            }
            Self::Ended => ErrorCode::Gone,
            Self::AlreadyJoined | Self::Conflict(_) => ErrorCode::Conflict,
            Self::NotPresent | Self::NoHelpRequest => ErrorCode::NotFound,
            Self::NotAllowed(_) | Self::RecentlyDenied | Self::NotPeer => ErrorCode::Forbidden,
            Self::Full => ErrorCode::Full,
            Self::Invalid(_) => ErrorCode::Invalid,
            Self::TooLarge(_) => ErrorCode::TooLarge,
            Self::RateLimited => ErrorCode::RateLimited,
            Self::Unavailable | Self::Busy => ErrorCode::Unavailable,
            Self::Internal => ErrorCode::Internal,
        }
    }
}

impl From<WriteFailed> for SessionError {
    fn from(failure: WriteFailed) -> Self {
        match failure {
            // A session taken over by another owner: a retry reaches the new one.
            WriteFailed::Unavailable | WriteFailed::Fenced => Self::Unavailable,
            WriteFailed::Rejected => Self::Internal,
        }
    }
}
