//! Endpoints: `/api/v1/app/{app_id}/endpoint`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use herald_core::EndpointId;
use herald_core::model::{DEFAULT_ENDPOINT_TIMEOUT, Endpoint, EndpointSettings};
use herald_core::signing::EndpointSecret;
use herald_core::transform::{PayloadTemplate, Transformation};
use herald_core::validate::{EndpointUrl, EventTypeName};
use herald_store::{NewEndpoint, Order, StoreError};
use serde_json::value::RawValue;

use super::{
    Cursor, MAX_DESCRIPTION_CHARS, RouteBoth, check_length, page_request, parse_channels, parse_event_types, parse_uid,
};
use crate::AppState;
use crate::access::{self, Caller};
use crate::dto::{
    BasicAuthIn, BatchDto, DisableRuleDto, EndpointIn, EndpointOut, EndpointPatch, ListResponse, RetryScheduleDto,
    VerifyTokenIn, check_fifo_and_batch,
};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, QueryPairs};
use crate::operational;

/// Longest per-endpoint timeout we accept; beyond it a dead endpoint would
/// hold a delivery slot for too long.
const MAX_TIMEOUT: Duration = Duration::from_secs(120);

pub fn router() -> Router<AppState> {
    Router::new()
        .route_both("/app/{app_id}/endpoint", get(list_endpoints).post(create_endpoint))
        .route_both(
            "/app/{app_id}/endpoint/{endpoint_id}",
            get(get_endpoint)
                .put(upsert_endpoint)
                .patch(patch_endpoint)
                .delete(delete_endpoint),
        )
}

/// An endpoint URL as the server accepts it: valid, and `https://` when
/// the server requires it.
pub(crate) fn parse_url(s: &AppState, url: &str) -> ApiResult<EndpointUrl> {
    let url = EndpointUrl::parse(url).map_err(|e| ApiError::invalid(&["body", "url"], e))?;
    if s.config.require_https && !url.as_str().starts_with("https://") {
        return Err(ApiError::invalid_msg(
            &["body", "url"],
            "value_error.url.scheme",
            "this server requires https:// endpoint URLs",
        ));
    }
    Ok(url)
}

/// Headers Herald sets itself, which an endpoint's custom headers may not replace.
const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "host",
    "te",
    "upgrade",
];

/// Custom headers must be valid HTTP and must not collide with ours; names
/// are stored lower-case.
pub(crate) fn parse_headers(headers: Option<BTreeMap<String, String>>) -> ApiResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (name, value) in headers.unwrap_or_default() {
        let lower = name.to_ascii_lowercase();
        let invalid = |msg: String| ApiError::invalid_msg(&["body", "headers", &name], "value_error.header", msg);
        if axum::http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            return Err(invalid(format!("'{name}' is not a valid header name")));
        }
        if axum::http::HeaderValue::from_str(&value).is_err() {
            return Err(invalid(format!("the value of '{name}' is not a valid header value")));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(invalid(format!("'{name}' is set by Herald and cannot be overridden")));
        }
        out.insert(lower, value);
    }
    Ok(out)
}

/// `basicAuth` owns the `Authorization` header: a custom header, or a
/// `bodySignature` header, of that name beside it would be replaced on the
/// wire without a word, so the pair is refused. `loc` names what the
/// request was changing.
pub(crate) fn check_authorization(settings: &EndpointSettings, loc: &[&str]) -> ApiResult<()> {
    if settings.basic_auth.is_none() {
        return Ok(());
    }
    let custom = settings.headers.contains_key("authorization");
    let signature = settings
        .body_signature
        .as_ref()
        .is_some_and(|b| b.header == "authorization");
    if custom || signature {
        return Err(ApiError::invalid_msg(
            loc,
            "value_error.header",
            "basicAuth sets the Authorization header; remove the endpoint's own 'authorization' header first",
        ));
    }
    Ok(())
}

fn parse_timeout(secs: Option<f64>) -> ApiResult<Option<Duration>> {
    secs.map(|s| {
        if s.is_finite() && s > 0.0 && Duration::from_secs_f64(s) <= MAX_TIMEOUT {
            Ok(Duration::from_secs_f64(s))
        } else {
            Err(ApiError::invalid_msg(
                &["body", "timeoutSecs"],
                "value_error.number.not_in_range",
                format!("timeoutSecs must be above 0 and at most {}", MAX_TIMEOUT.as_secs()),
            ))
        }
    })
    .transpose()
}

#[utoipa::path(
    get,
    path = "/api/v1/app/{app_id}/endpoint",
    tag = "endpoint",
    summary = "List endpoints (newest first)",
    params(crate::dto::AppPath, crate::dto::PageQuery),
    responses((status = 200, description = "The page", body = crate::dto::ListResponse<crate::dto::EndpointOut>), crate::dto::ErrorResponses)
)]
async fn list_endpoints(
    State(s): State<AppState>,
    Path(app_id): Path<String>,
    q: QueryPairs,
) -> ApiResult<Json<ListResponse<EndpointOut>>> {
    let app = s.store.get_app(&app_id).await?;
    let page = s
        .store
        .list_endpoints(
            &app.id,
            page_request(&q, Order::Descending, Cursor::Id(EndpointId::PREFIX))?,
        )
        .await?;
    Ok(Json(ListResponse::try_from_page(page, EndpointOut::try_from)?))
}

#[utoipa::path(
    post,
    path = "/api/v1/app/{app_id}/endpoint",
    tag = "endpoint",
    summary = "Create an endpoint",
    params(crate::dto::AppPath, crate::dto::IdempotencyHeader),
    request_body = crate::dto::EndpointIn,
    responses((status = 201, description = "Created", body = crate::dto::EndpointOut), crate::dto::ErrorResponses)
)]
async fn create_endpoint(
    State(s): State<AppState>,
    Path(app_id): Path<String>,
    JsonBody(body): JsonBody<EndpointIn>,
) -> ApiResult<(StatusCode, Json<EndpointOut>)> {
    let app = s.store.get_app(&app_id).await?;
    let new = new_endpoint(&s, body)?;
    check_event_types_exist(&s, &new.settings.filter_types).await?;
    let ep = s.store.create_endpoint(&app.id, new).await?;
    operational::endpoint_changed(&s, &app, None, Some(&ep)).await;
    Ok((StatusCode::CREATED, Json(ep.try_into()?)))
}

fn new_endpoint(s: &AppState, mut body: EndpointIn) -> ApiResult<NewEndpoint> {
    let secret = super::parse_secret(body.secret.take(), "secret")?.unwrap_or_else(EndpointSecret::generate_symmetric);
    let uid = parse_uid(body.uid.take(), "uid")?;
    let settings = settings(s, body)?;
    check_one_body_form(&settings)?;
    check_signature_key(&settings, &secret)?;
    Ok(NewEndpoint { uid, settings, secret })
}

/// The `sha256=<hex>` style is an HMAC, so it needs a `whsec_` secret; an
/// asymmetric one (`whsk_`) has no shared key to make it with.
fn check_signature_key(settings: &EndpointSettings, secret: &EndpointSecret) -> ApiResult<()> {
    match (&settings.body_signature, secret) {
        (Some(_), EndpointSecret::Asymmetric(_)) => Err(ApiError::invalid_msg(
            &["body", "bodySignature"],
            "value_error",
            "bodySignature needs a symmetric (whsec_) endpoint secret",
        )),
        _ => Ok(()),
    }
}

/// Every setting a create or a PUT gives, validated; what the body leaves
/// out takes its default.
/// The most requests in flight an endpoint may ask to be capped at.
const MAX_IN_FLIGHT: u32 = 10_000;

fn parse_max_in_flight(cap: Option<u32>) -> ApiResult<Option<u32>> {
    match cap {
        Some(c) if !(1..=MAX_IN_FLIGHT).contains(&c) => Err(ApiError::invalid_msg(
            &["body", "maxInFlight"],
            "value_error.number.out_of_range",
            format!("must be from 1 to {MAX_IN_FLIGHT}"),
        )),
        c => Ok(c),
    }
}

fn settings(s: &AppState, body: EndpointIn) -> ApiResult<EndpointSettings> {
    let description = body.description.unwrap_or_default();
    check_length(&description, "description", MAX_DESCRIPTION_CHARS)?;
    let settings = EndpointSettings {
        url: parse_url(s, &body.url)?,
        description,
        metadata: body.metadata.unwrap_or_default(),
        disabled: body.disabled.unwrap_or(false),
        filter_types: parse_event_types(body.event_types, "eventTypes")?,
        channels: parse_channels(body.channels, "channels")?,
        throttle_rate: body.throttle_rate,
        headers: parse_headers(body.headers)?,
        timeout: parse_timeout(body.timeout_secs)?.unwrap_or(DEFAULT_ENDPOINT_TIMEOUT),
        payload_template: parse_template(body.payload_template)?,
        transformation: parse_transformation(body.transformation)?,
        retry: body.retry_schedule.map(RetryScheduleDto::parse).transpose()?,
        body_signature: body.body_signature.map(|b| b.parse(RESERVED_HEADERS)).transpose()?,
        disable_rule: body.disable_rule.map(DisableRuleDto::parse).transpose()?,
        fifo: body.fifo.unwrap_or(false),
        batch: body.batch.map(BatchDto::parse).transpose()?,
        max_in_flight: parse_max_in_flight(body.max_in_flight)?,
        basic_auth: body.basic_auth.map(BasicAuthIn::parse).transpose()?,
        verify_token: body.verify_token.map(VerifyTokenIn::parse).transpose()?,
        body_encoding: body.body_encoding.map(Into::into).unwrap_or_default(),
    };
    check_authorization(&settings, &["body", "basicAuth"])?;
    check_fifo_and_batch(settings.fifo, settings.batch.as_ref())?;
    Ok(settings)
}

/// A template given as JSON; serde has already turned `null` into `None`.
fn parse_template(raw: Option<Box<RawValue>>) -> ApiResult<Option<PayloadTemplate>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    PayloadTemplate::parse(raw.get())
        .map(Some)
        .map_err(|e| ApiError::invalid_msg(&["body", "payloadTemplate"], "value_error.template", e.to_string()))
}

/// A jq program, checked to compile (it is compiled again, once, when
/// the endpoint's delivery target is loaded).
fn parse_transformation(source: Option<String>) -> ApiResult<Option<String>> {
    let Some(source) = source else {
        return Ok(None);
    };
    Transformation::compile(&source)
        .map(|_| Some(source))
        .map_err(|e| ApiError::invalid_msg(&["body", "transformation"], "value_error.transformation", e.to_string()))
}

/// A body is built one way: a template or a transformation, not both.
fn check_one_body_form(settings: &EndpointSettings) -> ApiResult<()> {
    if settings.payload_template.is_some() && settings.transformation.is_some() {
        return Err(ApiError::invalid_msg(
            &["body", "transformation"],
            "value_error.transformation",
            "set payloadTemplate or transformation, not both",
        ));
    }
    Ok(())
}

/// Svix's rule: an endpoint may filter only on event types that exist. One
/// batched lookup, so a list of 100,000 names costs linear time.
async fn check_event_types_exist(s: &AppState, types: &Option<Vec<EventTypeName>>) -> ApiResult<()> {
    let Some(types) = types else { return Ok(()) };
    let missing = s.store.missing_event_types(types.clone()).await?;
    let Some(first) = missing.first() else {
        return Ok(());
    };
    let index = types.iter().position(|t| t == first).unwrap_or_default().to_string();
    Err(ApiError::invalid_msg(
        &["body", "eventTypes", &index],
        "value_error.event_type.unknown",
        format!(
            "event type '{}' does not exist ({} of the listed types do not); create it first",
            first.as_str(),
            missing.len()
        ),
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
    tag = "endpoint",
    summary = "Get an endpoint",
    params(crate::dto::AppPath, crate::dto::EndpointPath),
    responses((status = 200, description = "The endpoint", body = crate::dto::EndpointOut), crate::dto::ErrorResponses)
)]
async fn get_endpoint(
    State(s): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<EndpointOut>> {
    Ok(Json(find(&s, &app_id, &endpoint_id).await?.try_into()?))
}

pub(crate) async fn find(s: &AppState, app_id: &str, endpoint_id: &str) -> ApiResult<Endpoint> {
    let app = s.store.get_app(app_id).await?;
    Ok(s.store.get_endpoint(&app.id, endpoint_id).await?)
}

/// PUT: replaces the endpoint's settings, creating it (with the path as its
/// uid) if absent. The secret is kept.
#[utoipa::path(
    put,
    path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
    tag = "endpoint",
    summary = "Create or replace an endpoint (the secret is kept)",
    params(crate::dto::AppPath, crate::dto::EndpointPath),
    request_body = crate::dto::EndpointIn,
    responses((status = 200, description = "Replaced", body = crate::dto::EndpointOut), (status = 201, description = "Created", body = crate::dto::EndpointOut), crate::dto::ErrorResponses)
)]
async fn upsert_endpoint(
    State(s): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<EndpointIn>,
) -> ApiResult<(StatusCode, Json<EndpointOut>)> {
    let app = s.store.get_app(&app_id).await?;
    let mut new = new_endpoint(&s, body)?;
    check_event_types_exist(&s, &new.settings.filter_types).await?;
    match s.store.get_endpoint(&app.id, &endpoint_id).await {
        Ok(mut ep) => {
            let before = ep.clone();
            // The secret is kept: PUT replaces settings, not credentials.
            check_signature_key(&new.settings, &s.store.get_endpoint_secret(&app.id, &ep.id).await?)?;
            ep.uid = new.uid;
            ep.settings = new.settings;
            let ep = s.store.update_endpoint(ep).await?;
            operational::endpoint_changed(&s, &app, Some(&before), Some(&ep)).await;
            Ok((StatusCode::OK, Json(ep.try_into()?)))
        }
        Err(StoreError::NotFound(_)) => {
            if new.uid.is_none() {
                new.uid = parse_uid(Some(endpoint_id), "uid")?;
            }
            let ep = s.store.create_endpoint(&app.id, new).await?;
            operational::endpoint_changed(&s, &app, None, Some(&ep)).await;
            Ok((StatusCode::CREATED, Json(ep.try_into()?)))
        }
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(
    patch,
    path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
    tag = "endpoint",
    summary = "Change some fields of an endpoint",
    params(crate::dto::AppPath, crate::dto::EndpointPath),
    request_body = crate::dto::EndpointPatch,
    responses((status = 200, description = "Changed", body = crate::dto::EndpointOut), crate::dto::ErrorResponses)
)]
async fn patch_endpoint(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<EndpointPatch>,
) -> ApiResult<Json<EndpointOut>> {
    access::allows_endpoint_patch(&caller, body.only_transformations())?;
    let app = s.store.get_app(&app_id).await?;
    let mut ep = s.store.get_endpoint(&app.id, &endpoint_id).await?;
    let before = ep.clone();
    if let Some(uid) = body.uid {
        ep.uid = parse_uid(uid, "uid")?;
    }
    let set = &mut ep.settings;
    if let Some(url) = body.url {
        set.url = parse_url(&s, &url)?;
    }
    if let Some(description) = body.description {
        check_length(&description, "description", MAX_DESCRIPTION_CHARS)?;
        set.description = description;
    }
    if let Some(disabled) = body.disabled {
        set.disabled = disabled;
    }
    if let Some(types) = body.event_types {
        let types = parse_event_types(types, "eventTypes")?;
        check_event_types_exist(&s, &types).await?;
        set.filter_types = types;
    }
    if let Some(channels) = body.channels {
        set.channels = parse_channels(channels, "channels")?;
    }
    if let Some(metadata) = body.metadata {
        set.metadata = metadata;
    }
    if let Some(rate) = body.throttle_rate {
        set.throttle_rate = rate;
    }
    if let Some(timeout) = parse_timeout(body.timeout_secs)? {
        set.timeout = timeout;
    }
    if let Some(template) = body.payload_template {
        set.payload_template = parse_template(template)?;
    }
    if let Some(transformation) = body.transformation {
        set.transformation = parse_transformation(transformation)?;
    }
    // On the merged result: a PATCH may set one while the other is stored.
    check_one_body_form(set)?;
    if let Some(retry) = body.retry_schedule {
        set.retry = retry.map(RetryScheduleDto::parse).transpose()?;
    }
    if let Some(style) = body.body_signature {
        set.body_signature = style.map(|b| b.parse(RESERVED_HEADERS)).transpose()?;
        check_signature_key(set, &s.store.get_endpoint_secret(&app.id, &ep.id).await?)?;
    }
    if let Some(rule) = body.disable_rule {
        set.disable_rule = rule.map(DisableRuleDto::parse).transpose()?;
    }
    if let Some(fifo) = body.fifo {
        set.fifo = fifo;
    }
    if let Some(batch) = body.batch {
        set.batch = batch.map(BatchDto::parse).transpose()?;
    }
    if let Some(cap) = body.max_in_flight {
        set.max_in_flight = parse_max_in_flight(cap)?;
    }
    check_fifo_and_batch(set.fifo, set.batch.as_ref())?;
    if let Some(basic) = body.basic_auth {
        set.basic_auth = basic.map(BasicAuthIn::parse).transpose()?;
    }
    if let Some(token) = body.verify_token {
        set.verify_token = token.map(VerifyTokenIn::parse).transpose()?;
    }
    if let Some(encoding) = body.body_encoding {
        set.body_encoding = encoding.map(Into::into).unwrap_or_default();
    }
    check_authorization(set, &["body", "basicAuth"])?;
    let ep = s.store.update_endpoint(ep).await?;
    operational::endpoint_changed(&s, &app, Some(&before), Some(&ep)).await;
    Ok(Json(ep.try_into()?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
    tag = "endpoint",
    summary = "Delete an endpoint; its pending work stops",
    params(crate::dto::AppPath, crate::dto::EndpointPath),
    responses((status = 204, description = "Deleted"), crate::dto::ErrorResponses)
)]
async fn delete_endpoint(
    State(s): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = s.store.get_app(&app_id).await?;
    let ep = s.store.get_endpoint(&app.id, &endpoint_id).await?;
    s.store.delete_endpoint(&ep.app_id, &ep.id).await?;
    operational::endpoint_changed(&s, &app, Some(&ep), None).await;
    Ok(StatusCode::NO_CONTENT)
}
