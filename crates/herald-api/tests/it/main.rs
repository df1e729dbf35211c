//! herald-api's integration tests: the OpenAPI document against Svix's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod openapi;
