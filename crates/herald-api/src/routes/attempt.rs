//! Attempt history: `/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id}`
//! and `/api/v1/app/{app_id}/attempt/msg/{msg_id}`.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use herald_core::model::Attempt;
use herald_core::model::DeliveryStatus;
use herald_store::{AttemptFilter, Order, Page};

use super::{RouteBoth, page_request};
use crate::AppState;
use crate::dto::{ListResponse, MessageAttemptOut, MessageOut};
use crate::error::{ApiError, ApiResult};
use crate::extract::QueryPairs;

pub fn router() -> Router<AppState> {
    Router::new()
        .route_both(
            "/app/{app_id}/attempt/endpoint/{endpoint_id}",
            get(list_attempts_by_endpoint),
        )
        .route_both("/app/{app_id}/attempt/msg/{msg_id}", get(list_attempts_by_msg))
}

fn filter(q: &QueryPairs) -> ApiResult<AttemptFilter> {
    let status = q
        .get("status")
        .map(|v| {
            v.parse::<i64>()
                .ok()
                .and_then(DeliveryStatus::from_code)
                .ok_or_else(|| {
                    ApiError::invalid_msg(
                        &["query", "status"],
                        "type_error.enum",
                        format!("'{v}' is not a message status (0-4)"),
                    )
                })
        })
        .transpose()?;
    let status_code_class = q
        .get("status_code_class")
        .map(|v| match v.parse::<u16>() {
            Ok(c @ (0 | 100 | 200 | 300 | 400 | 500)) => Ok(c),
            _ => Err(ApiError::invalid_msg(
                &["query", "status_code_class"],
                "type_error.enum",
                format!("'{v}' is not a status code class (0, 100, 200, 300, 400, 500)"),
            )),
        })
        .transpose()?;
    Ok(AttemptFilter {
        status,
        status_code_class,
        before: q.datetime("before")?,
        after: q.datetime("after")?,
        event_types: q.list("event_types"),
        endpoint_id: q.get("endpoint_id").map(str::to_owned),
        channel: q.get("channel").map(str::to_owned),
    })
}

async fn respond(
    s: &AppState,
    page: Page<Attempt>,
    q: &QueryPairs,
) -> ApiResult<Json<ListResponse<MessageAttemptOut>>> {
    let with_msg = q.bool("with_msg", false)?;
    let with_content = q.bool("with_content", true)?;
    let mut out = ListResponse::from_page(page.clone(), MessageAttemptOut::from);
    if with_msg {
        for (dto, attempt) in out.data.iter_mut().zip(page.data) {
            // A message pruned under its attempts has none to show; any
            // other failure is the request's.
            match s.store.get_message(&attempt.app_id, attempt.msg_id.as_str()).await {
                Ok(m) => dto.msg = Some(MessageOut::new(m, with_content)?),
                Err(herald_store::StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Json(out))
}

async fn list_attempts_by_endpoint(
    State(s): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    q: QueryPairs,
) -> ApiResult<Json<ListResponse<MessageAttemptOut>>> {
    let ep = super::endpoint::find(&s, &app_id, &endpoint_id).await?;
    let page = s
        .store
        .list_attempts_by_endpoint(&ep.app_id, &ep.id, filter(&q)?, page_request(&q, Order::Descending)?)
        .await?;
    respond(&s, page, &q).await
}

async fn list_attempts_by_msg(
    State(s): State<AppState>,
    Path((app_id, msg_id)): Path<(String, String)>,
    q: QueryPairs,
) -> ApiResult<Json<ListResponse<MessageAttemptOut>>> {
    let app = s.store.get_app(&app_id).await?;
    let msg = s.store.get_message(&app.id, &msg_id).await?;
    let page = s
        .store
        .list_attempts_by_msg(&app.id, &msg.id, filter(&q)?, page_request(&q, Order::Descending)?)
        .await?;
    respond(&s, page, &q).await
}
