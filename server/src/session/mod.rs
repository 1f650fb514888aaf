//! Sessions: one actor per live session owns its membership, lobby, presence and room chat.
//!
//! - [`state`] is the pure state machine (`apply(command) -> effects`).
//! - [`actor`] runs it: a task with a bounded mailbox that carries out the effects (fan-out,
//!   writes through the store's writer, history reads).
//! - [`registry`] finds or loads a session's actor and releases it when it stops; it only hands
//!   out handles and never holds session state.
//! - [`create`] creates sessions (shared by HTTP and the socket).
//! - [`wire`] maps the session's events to protocol messages.
//!
//! Breakout rooms, several nodes and signaling extend the same actor: more rooms in
//! [`state::SessionState`], a bus subscription beside the mailbox, more commands.

pub mod actor;
pub mod create;
pub mod registry;
pub mod state;
pub mod wire;

pub use actor::{Mail, SessionDeps, SessionHandle};
pub use create::{CreateError, NewSessionSpec, create_session};
pub use registry::{Registry, RegistryError};
pub use state::{Command, Rules, SessionError};
