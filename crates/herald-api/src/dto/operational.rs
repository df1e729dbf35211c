//! Operational webhook endpoints in Svix's shapes
//! (`OperationalWebhookEndpointIn`, `…Out`, `…Update`, `…SecretIn`,
//! `…HeadersIn`), which the v1 document predates.

use std::collections::BTreeMap;

use herald_core::model::Endpoint;
use serde::{Deserialize, Serialize};

use super::fmt_time;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationalWebhookEndpointIn {
    pub url: String,
    pub description: Option<String>,
    pub uid: Option<String>,
    pub disabled: Option<bool>,
    /// Operational event types to receive; absent: all of them.
    pub filter_types: Option<Vec<String>>,
    pub rate_limit: Option<u32>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// `whsec_…`; absent: one is generated.
    pub secret: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationalWebhookEndpointUpdate {
    pub url: String,
    pub description: Option<String>,
    pub uid: Option<String>,
    pub disabled: Option<bool>,
    pub filter_types: Option<Vec<String>>,
    pub rate_limit: Option<u32>,
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationalWebhookEndpointOut {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    pub url: String,
    pub description: String,
    pub disabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_types: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    pub metadata: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Endpoint> for OperationalWebhookEndpointOut {
    fn from(e: Endpoint) -> Self {
        let s = e.settings;
        Self {
            id: e.id.to_string(),
            uid: e.uid.map(|u| u.into_string()),
            url: s.url.as_str().to_owned(),
            description: s.description,
            disabled: s.disabled,
            filter_types: s.filter_types.map(|t| t.into_iter().map(|n| n.into_string()).collect()),
            rate_limit: s.throttle_rate,
            metadata: s.metadata,
            created_at: fmt_time(&e.created_at),
            updated_at: fmt_time(&e.updated_at),
        }
    }
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct OperationalWebhookEndpointSecretIn {
    /// `whsec_…`; absent: one is generated.
    pub key: Option<String>,
}
