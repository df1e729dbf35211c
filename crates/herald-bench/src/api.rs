//! The bench's side of the Svix v1 API: a plain reqwest client (no proxies)
//! for the few setup calls, and `set_up`, which creates a fresh application
//! whose endpoints all point at the sink. The message POSTs themselves go
//! through the leaner client in `load`.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;

use crate::Sink;

pub(crate) fn http_client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency.max(1))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?)
}

pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) token: String,
}

impl Api {
    async fn post(&self, path: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        self.send(
            "POST",
            path,
            self.http.post(format!("{}/api/v1{path}", self.base)).json(&body),
        )
        .await
    }

    async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.send("GET", path, self.http.get(format!("{}/api/v1{path}", self.base)))
            .await
    }

    async fn send(&self, method: &str, path: &str, req: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }
}

/// A fresh application (so runs never mix) with `fanout` endpoints on the
/// sink; returns the application id.
pub(crate) async fn set_up(
    api: &Api,
    sink: &Sink,
    fanout: u32,
    endpoint_json: Option<&serde_json::Value>,
) -> anyhow::Result<String> {
    // Servers that require event types to exist get one; where it exists
    // already, or types are free-form, the answer does not matter.
    let _ = api
        .post(
            "/event-type/",
            json!({"name": "bench.event", "description": "herald bench"}),
        )
        .await;
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let app = api
        .post(
            "/app/",
            json!({"name": format!("bench {run_id}"), "uid": format!("bench-{run_id}")}),
        )
        .await?;
    let app_id = app["id"].as_str().context("application id")?.to_owned();
    for i in 0..fanout {
        let mut body = json!({"url": format!("{}/ep{i}", sink.url()), "description": "herald bench sink"});
        if let (Some(extra), Some(fields)) = (endpoint_json.and_then(|v| v.as_object()), body.as_object_mut()) {
            fields.extend(extra.clone());
        }
        let ep = api.post(&format!("/app/{app_id}/endpoint/"), body).await?;
        let ep_id = ep["id"].as_str().context("endpoint id")?;
        let secret = api.get(&format!("/app/{app_id}/endpoint/{ep_id}/secret/")).await?;
        sink.add_secret(secret["key"].as_str().context("secret key")?)?;
    }
    Ok(app_id)
}
