//! Herald's domain: the resources a platform manages, the rules that decide
//! who receives a message and when it is tried again, and how requests are
//! signed. Everything here is plain data and pure functions so the same rules
//! hold on every storage backend and can be tested without I/O; the one
//! thing with interior state is `metrics`' lock-free histogram, shared by
//! the store and the engine for `/metrics`.

pub mod access;
pub mod credentials;
pub mod health;
pub mod ids;
pub mod metrics;
pub mod model;
pub mod relay;
pub mod retry;
pub mod signing;
pub mod ssrf;
pub mod transform;
pub mod validate;

pub use ids::{AppId, AttemptId, EndpointId, MessageId, TaskId, TokenId};
