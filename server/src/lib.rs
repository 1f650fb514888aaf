//! Convene: a realtime coordination server for live video sessions.
//!
//! See `ARCHITECTURE.md` at the repository root for the map of these modules and the rules
//! between them. The entry point is [`run`], which serves on a listener until a cancellation
//! token fires, so tests start and stop whole servers in-process.

pub mod admission;
pub mod app;
pub mod auth;
pub mod awaiting;
pub mod bus;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod handlers;
pub mod ice;
pub mod inbox;
pub mod limits;
pub mod metrics;
pub mod outbound;
pub mod presence;
pub mod rooms;
pub mod server;
pub mod session;
pub mod store;
pub mod transport;

pub use config::{ChatLimits, Config, ConnectionLimits};
pub use server::{ServerError, open_store, run};
