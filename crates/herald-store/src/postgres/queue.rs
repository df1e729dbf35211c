//! PostgreSQL: DeliveryQueue.

use crate::Result;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use herald_core::model::{Attempt, Message};
use herald_core::validate::{Channel, EventTypeName, Uid};
use herald_core::{AppId, EndpointId, MessageId};
use std::time::Duration;

use super::PgStore;
#[allow(unused_imports)]
use crate::*;

#[async_trait::async_trait]
impl crate::DeliveryQueue for PgStore {
    async fn ingest(&self, msg: NewMessage) -> Result<Ingested> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn claim_due(&self, lease: &Lease, limit: usize, max_bytes: usize) -> Result<Vec<DeliveryJob>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn next_due(&self) -> Result<Option<Duration>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn backlog(&self) -> Result<u64> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn renew(&self, lease: &Lease, held: Vec<Held>) -> Result<Vec<LeaseResult>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn record_outcomes(&self, lease: &Lease, outcomes: Vec<Outcome>) -> Result<Vec<LeaseResult>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn release(&self, lease: &Lease, held: Vec<Held>) -> Result<Vec<LeaseResult>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn recover(&self, owner: &NodeId) -> Result<u64> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn park(&self, lease: &Lease, hold: Duration, held: Vec<Held>) -> Result<Vec<LeaseResult>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn park_endpoints(&self, lease: &Lease, hold: Duration, endpoints: Vec<EndpointId>) -> Result<u64> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn claim_parked(
        &self,
        lease: &Lease,
        endpoint: EndpointId,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<DeliveryJob>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn probe_parked(&self, lease: &Lease, endpoint: EndpointId) -> Result<Option<DeliveryJob>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn renew_parked(&self, lease: &Lease, hold: Duration, endpoints: Vec<EndpointId>) -> Result<u64> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn unpark(&self, lease: &Lease, endpoints: Vec<EndpointId>) -> Result<u64> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn fifo_due(&self) -> Result<FifoDue> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn claim_fifo(
        &self,
        lease: &Lease,
        endpoint: EndpointId,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<DeliveryJob>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
}
