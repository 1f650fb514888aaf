//! Integration tests: real servers, real sockets, a fresh database per test, on SQLite and on
//! Postgres alike.

mod common;

mod audit;
mod auth;
mod bad_input;
mod binary;
mod breakouts;
mod chat;
mod closed_rooms;
mod cluster;
mod conversations;
mod demo;
mod durability;
mod failover;
mod fencing;
mod host_controls;
mod http;
mod jwks;
mod limits;
mod nodes;
mod one_reply;
mod outage;
mod peer_connections;
mod presence;
mod resume;
mod sessions;
mod video;
mod writer;
