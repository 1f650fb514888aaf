//! The bus between nodes. Today it only checks that Redis answers, for `/readyz`; fan-out across
//! nodes arrives behind this module, and only [`redis`] knows Redis.

pub mod redis;
