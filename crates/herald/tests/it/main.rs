//! End-to-end tests: the real `herald` binary, real HTTP on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod access;
mod api;
mod backlog;
mod batch;
mod bench;
mod browser;
mod config;
mod crash;
mod credentials;
mod dashboard;
mod delivery;
mod disabling;
mod fifo;
mod hardening;
mod isolation;
mod lifecycle;
mod listen;
mod listener;
mod metrics;
mod operational;
mod permissions;
mod policy;
mod portal;
mod prom;
mod relay;
mod retention;
mod sdk;
mod sdk_js;
mod sdk_retry;
mod signing;
mod strict;
mod transform;
mod ui;
