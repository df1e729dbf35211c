//! Ingest: a message row and one delivery row per subscribed endpoint,
//! written by the writer thread inside its group commit.

use chrono::{DateTime, Utc};
use herald_core::MessageId;
use herald_core::model::{Message, subscribers};
use herald_core::validate::Uid;
use rusqlite::params;

use super::holds::held_elsewhere;
use super::rows::{after, conflict, from_ms, opt_json};
use super::writer::WriterCtx;
use crate::{Change, DeliveryJob, Ingested, NewMessage, Result, StoreError};

/// Runs without a savepoint (the hot path): every way it can fail alone
/// (an unknown application, a duplicate `eventId`) comes before its first
/// write.
pub(crate) fn insert_message_with_fanout(ctx: &mut WriterCtx, msg: NewMessage) -> Result<Ingested> {
    let app_id = ctx.resolve_app(&msg.app.0)?;
    let endpoints = ctx.endpoints_of(&app_id)?;
    // A failure of its own must come before the first write (see above).
    if let Some(only) = &msg.only_endpoint
        && !endpoints.iter().any(|ep| &ep.id == only)
    {
        return Err(StoreError::NotFound("endpoint"));
    }
    let now_ms = ctx.now()?;
    let now: DateTime<Utc> =
        from_ms(now_ms).ok_or_else(|| StoreError::Corrupt("the database clock is out of range".into()))?;
    let tags_json = opt_json(&msg.tags)?;
    let id = MessageId::new();
    let channels_json = opt_json(&msg.channels)?;
    ctx.conn
        .prepare_cached(
            "INSERT INTO message (id, app_id, event_type, event_id, channels, tags, payload, created_at, \
             payload_expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            id.as_str(),
            app_id.as_str(),
            msg.event_type.as_str(),
            msg.event_id.as_ref().map(Uid::as_str),
            channels_json,
            tags_json,
            &msg.payload[..],
            now_ms,
            // Only an explicit period is stored: the partial index on it
            // then costs a group commit nothing for the common message
            // (retention finds those by age, in rowid order).
            msg.payload_retention.map(|period| after(now_ms, period))
        ])
        .map_err(|e| conflict(e, "a message with this eventId already exists"))?;

    // Born claimed (fence 1) when the engine will send from memory; an
    // ordered endpoint's never is: its deliveries go out in order through
    // `claim_fifo`, whoever holds the endpoint's head.
    let (owner, claim_until, fence) = match &msg.lease {
        Some(lease) => (Some(lease.owner.as_str()), Some(after(now_ms, lease.ttl)), 1),
        None => (None, None, 0),
    };
    let mut deliveries = Vec::new();
    let mut fifo = Vec::new();
    let mut left_for_holder = false;
    let targets: Vec<&herald_core::model::Endpoint> = match &msg.only_endpoint {
        Some(only) => endpoints.iter().filter(|ep| &ep.id == only).collect(),
        None => subscribers(&endpoints, msg.event_type.as_str(), msg.channels.as_deref()).collect(),
    };
    let mut elsewhere = Vec::with_capacity(targets.len());
    for ep in &targets {
        elsewhere.push(!ep.settings.fifo && held_elsewhere(ctx, &ep.id, owner)?);
    }
    let mut insert = ctx.conn.prepare_cached(
        "INSERT INTO delivery (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, claimed_by, \
         claim_until, fence, updated_at, fifo) VALUES (?1, ?2, ?3, 1, 0, ?4, ?5, ?6, ?7, ?4, ?8)",
    )?;
    for (ep, elsewhere) in targets.into_iter().zip(elsewhere) {
        let fifo_ep = ep.settings.fifo;
        // Claimed unless ordered, or left unclaimed for the node that
        // holds the endpoint.
        let claimed = !fifo_ep && !elsewhere;
        insert.execute(params![
            id.as_str(),
            ep.id.as_str(),
            app_id.as_str(),
            now_ms,
            if claimed { owner } else { None },
            if claimed { claim_until } else { None },
            if claimed { fence } else { 0 },
            fifo_ep
        ])?;
        if fifo_ep {
            fifo.push((app_id.clone(), ep.id.clone()));
            continue;
        }
        if elsewhere {
            left_for_holder = true;
            continue;
        }
        deliveries.push(DeliveryJob {
            delivery_id: ctx.conn.last_insert_rowid(),
            fence,
            msg_id: id.clone(),
            app_id: app_id.clone(),
            endpoint_id: ep.id.clone(),
            event_type: msg.event_type.clone(),
            payload: msg.payload.clone(),
            attempts: 0,
            msg_created_at: now,
            first_attempt_at: None,
            manual: false,
        });
    }
    let message = Message {
        id,
        app_id,
        event_type: msg.event_type,
        event_id: msg.event_id,
        channels: msg.channels,
        tags: msg.tags,
        payload: msg.payload,
        created_at: now,
    };
    drop(insert);
    ctx.tally.messages += 1;
    if left_for_holder {
        ctx.announce(Change::Due);
    }
    Ok(Ingested {
        message,
        deliveries,
        fifo,
    })
}
