//! One module per resource, each with its own router.

pub mod app;
pub mod attempt;
pub mod auth;
pub mod endpoint;
pub mod endpoint_tools;
pub mod event_type;
pub mod health;
pub mod message;
pub mod metrics;
pub mod operational;
pub mod relay;
pub mod task;

use std::collections::HashSet;

use axum::Router;
use axum::routing::MethodRouter;
use herald_core::signing::EndpointSecret;
use herald_core::validate::{Channel, EventTypeName, MAX_CHANNELS, Uid};
use herald_store::{MessageFilter, Order, PageRequest};

use crate::error::{ApiError, ApiResult};
use crate::extract::QueryPairs;

/// Svix's SDKs call paths with a trailing slash and people often leave it
/// off, so every path is routed both ways; the router matches either form
/// without rewriting any request's URI.
pub(crate) trait RouteBoth<S> {
    fn route_both(self, path: &str, method_router: MethodRouter<S>) -> Self;
}

impl<S: Clone + Send + Sync + 'static> RouteBoth<S> for Router<S> {
    fn route_both(self, path: &str, method_router: MethodRouter<S>) -> Self {
        self.route(path, method_router.clone())
            .route(&format!("{path}/"), method_router)
    }
}

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 250;

/// What a list's `iterator` must be: an id with this prefix, or (event
/// types) a name. A leading `-` (from `prevIterator`) walks backwards.
#[derive(Clone, Copy)]
pub(crate) enum Cursor {
    Id(&'static str),
    Name,
}

/// The iterator, checked: one a list never handed out is a 422, not a
/// quietly empty or restarted page.
fn parse_iterator(q: &QueryPairs, cursor: Cursor) -> ApiResult<Option<String>> {
    let Some(raw) = q.get("iterator").filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let bare = raw.strip_prefix('-').unwrap_or(raw);
    let ok = match cursor {
        Cursor::Id(prefix) => {
            bare.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('_'))
                && herald_core::ids::id_time_ms(bare).is_some()
        }
        Cursor::Name => EventTypeName::parse(bare).is_ok(),
    };
    if !ok {
        return Err(ApiError::invalid_msg(
            &["query", "iterator"],
            "value_error",
            format!("'{raw}' is not an iterator this list handed out"),
        ));
    }
    Ok(Some(raw.to_owned()))
}

/// `limit`, `iterator` and `order` from the query string.
pub(crate) fn page_request(q: &QueryPairs, default_order: Order, cursor: Cursor) -> ApiResult<PageRequest> {
    let limit = q.uint("limit")?.map(|n| n as usize).unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::invalid_msg(
            &["query", "limit"],
            "value_error.number.not_in_range",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let order = match q.get("order") {
        None => default_order,
        Some("ascending") => Order::Ascending,
        Some("descending") => Order::Descending,
        Some(other) => {
            return Err(ApiError::invalid_msg(
                &["query", "order"],
                "type_error.enum",
                format!("order must be 'ascending' or 'descending', not '{other}'"),
            ));
        }
    };
    Ok(PageRequest {
        limit,
        iterator: parse_iterator(q, cursor)?,
        order,
    })
}

/// The message filters a list takes from its query string.
pub(crate) fn message_filter(q: &QueryPairs) -> ApiResult<MessageFilter> {
    Ok(MessageFilter {
        channel: q.get("channel").map(str::to_owned),
        before: q.datetime("before")?,
        after: q.datetime("after")?,
        event_types: q.list("event_types"),
        tag: q.get("tag").map(str::to_owned),
    })
}

/// A signing secret given in the body's `field` (`whsec_…` or `whpk_…`/`whsk_…`).
pub(crate) fn parse_secret(value: Option<String>, field: &str) -> ApiResult<Option<EndpointSecret>> {
    value
        .map(|text| {
            EndpointSecret::parse(&text)
                .map_err(|e| ApiError::invalid_msg(&["body", field], "value_error.secret", e.to_string()))
        })
        .transpose()
}

pub(crate) fn parse_uid(value: Option<String>, field: &str) -> ApiResult<Option<Uid>> {
    value
        .map(|u| Uid::parse(u).map_err(|e| ApiError::invalid(&["body", field], e)))
        .transpose()
}

/// An empty list is refused: it reads as "none" to some and "all" to others
/// (Svix requires at least one item; omit or `null` the field for all).
fn non_empty<T>(list: &[T], field: &str) -> ApiResult<()> {
    if list.is_empty() {
        return Err(ApiError::invalid_msg(
            &["body", field],
            "value_error.list.min_items",
            format!("{field} must list at least one item; leave it out (or null) for all"),
        ));
    }
    Ok(())
}

pub(crate) fn parse_channels(value: Option<Vec<String>>, field: &str) -> ApiResult<Option<Vec<Channel>>> {
    let Some(list) = value else { return Ok(None) };
    non_empty(&list, field)?;
    if list.len() > MAX_CHANNELS {
        return Err(ApiError::invalid_msg(
            &["body", field],
            "value_error.list.max_items",
            format!("at most {MAX_CHANNELS} channels are allowed"),
        ));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, c)| Channel::parse(c).map_err(|e| ApiError::invalid(&["body", field, &i.to_string()], e)))
        .collect::<ApiResult<Vec<_>>>()
        .map(Some)
}

pub(crate) fn parse_event_types(value: Option<Vec<String>>, field: &str) -> ApiResult<Option<Vec<EventTypeName>>> {
    let Some(list) = value else { return Ok(None) };
    non_empty(&list, field)?;
    // A set, not `Vec::contains`: lists of 100,000 names must cost linear time.
    let mut seen = HashSet::with_capacity(list.len());
    let mut out: Vec<EventTypeName> = Vec::with_capacity(list.len());
    for (i, name) in list.into_iter().enumerate() {
        let name = EventTypeName::parse(name).map_err(|e| ApiError::invalid(&["body", field, &i.to_string()], e))?;
        if seen.insert(name.clone()) {
            out.push(name);
        }
    }
    Ok(Some(out))
}

/// Longest application name and endpoint description, in characters:
/// Svix sets none, but an unbounded field is a way to fill the database.
pub(crate) const MAX_NAME_CHARS: usize = 256;
pub(crate) const MAX_DESCRIPTION_CHARS: usize = 4096;

pub(crate) fn check_name(name: &str, field: &str) -> ApiResult<()> {
    if name.trim().is_empty() {
        return Err(ApiError::invalid_msg(
            &["body", field],
            "value_error.any_str.min_length",
            format!("{field} must not be empty"),
        ));
    }
    check_length(name, field, MAX_NAME_CHARS)
}

pub(crate) fn check_length(text: &str, field: &str, max: usize) -> ApiResult<()> {
    if text.chars().count() > max {
        return Err(ApiError::invalid_msg(
            &["body", field],
            "value_error.any_str.max_length",
            format!("{field} must be at most {max} characters"),
        ));
    }
    Ok(())
}
