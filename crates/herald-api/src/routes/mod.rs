//! One module per resource, each with its own router.

pub mod app;
pub mod attempt;
pub mod endpoint;
pub mod event_type;
pub mod health;
pub mod message;
pub mod metrics;
pub mod relay;

use std::collections::HashSet;

use axum::Router;
use axum::routing::MethodRouter;
use herald_core::validate::{Channel, EventTypeName, MAX_CHANNELS, Uid};
use herald_store::{Order, PageRequest};

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

/// `limit`, `iterator` and `order` from the query string.
pub(crate) fn page_request(q: &QueryPairs, default_order: Order) -> ApiResult<PageRequest> {
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
        iterator: q.get("iterator").filter(|s| !s.is_empty()).map(str::to_owned),
        order,
    })
}

pub(crate) fn parse_uid(value: Option<String>, field: &str) -> ApiResult<Option<Uid>> {
    value
        .map(|u| Uid::parse(u).map_err(|e| ApiError::invalid(&["body", field], e)))
        .transpose()
}

pub(crate) fn parse_channels(value: Option<Vec<String>>, field: &str) -> ApiResult<Option<Vec<Channel>>> {
    let Some(list) = value else { return Ok(None) };
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

pub(crate) fn check_name(name: &str, field: &str) -> ApiResult<()> {
    if name.trim().is_empty() {
        return Err(ApiError::invalid_msg(
            &["body", field],
            "value_error.any_str.min_length",
            format!("{field} must not be empty"),
        ));
    }
    Ok(())
}
