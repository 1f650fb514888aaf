//! Sessions: one actor per live session owns its membership, lobby, presence and room chat.
//!
//! - [`state`] is the pure state machine (`apply(command) -> effects`).
//! - [`actor`] runs it: a task with a bounded mailbox that carries out the effects (fan-out,
//!   writes through the store's writer, history reads).
//! - [`registry`] finds a session's owner (this node, taking the lease and loading the session,
//!   or another) and releases its actor when it stops; it only hands out handles and never
//!   holds session state.
//! - [`handle`] is what connections hold: a session here, or on another node.
//! - [`create`] creates sessions (shared by HTTP and the socket).
//! - [`wire`] maps the session's events to protocol messages.
//!
//! With several nodes a session's actor runs on exactly one of them, its owner; the others
//! forward their connections' requests to it, and it delivers to their connections through the
//! bus ([`crate::delivery`]).

pub mod actor;
pub mod create;
pub mod handle;
pub mod registry;
pub mod state;
pub mod wire;

pub use actor::SessionDeps;
pub use create::{CreateError, NewSessionSpec, create_session};
pub use handle::{LocalSession, RemoteSession, SessionHandle, Undelivered};
pub use registry::{Registry, RegistryError};
pub use state::{Command, Rules, SessionError};
