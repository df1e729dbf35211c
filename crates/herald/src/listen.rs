//! `herald listen`: the flags (SPEC §1, each with a `HERALD_LISTEN_*` or
//! `HERALD_RELAY_*` environment variable) and the wiring; the listener
//! itself is the herald-listen crate.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use herald_listen::relay::RelayConfig;
use herald_listen::{Listen, ListenConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config;

#[derive(Args, Clone)]
pub struct ListenArgs {
    /// Port to receive requests and serve the page (/_herald/) on; 0 picks a free one.
    #[arg(long, env = "HERALD_LISTEN_PORT", default_value_t = 8072)]
    pub port: u16,
    /// Address to bind; the default keeps the listener on this machine.
    #[arg(long, env = "HERALD_LISTEN_HOST", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,
    /// Standard Webhooks key to verify signatures with (`whsec_...`, or
    /// `whpk_...` for ed25519); repeat it while a secret is being rotated.
    #[arg(long, env = "HERALD_LISTEN_SECRET", hide_env_values = true)]
    pub secret: Vec<String>,
    /// Check `sha256=<hex HMAC of the body>` in this header (e.g.
    /// X-Webhook-Signature) with --secret instead of Standard Webhooks; a
    /// `whsec_` secret is base64-decoded, any other is used as given.
    #[arg(
        long,
        env = "HERALD_LISTEN_SIGNATURE_HEADER",
        value_name = "NAME",
        requires = "secret"
    )]
    pub signature_header: Option<String>,
    /// Send each request on to this URL (its path and query appended) and
    /// answer the sender with the target's answer.
    #[arg(long, env = "HERALD_LISTEN_FORWARD", value_name = "URL")]
    pub forward: Option<String>,
    /// Answer every request at once with this status (default 200 without
    /// --forward; with --forward, setting it stops waiting for the target).
    #[arg(long, env = "HERALD_LISTEN_STATUS", value_name = "CODE")]
    pub status: Option<u16>,
    /// SQLite file that keeps the history across restarts.
    #[arg(
        long,
        env = "HERALD_LISTEN_DB",
        default_value = "./herald-listen.db",
        value_name = "FILE"
    )]
    pub db: PathBuf,
    /// Largest request body accepted (and largest target answer read); a
    /// larger request gets 413 and is not stored.
    #[arg(long, env = "HERALD_LISTEN_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Requests kept in the history; the oldest are pruned beyond this.
    #[arg(long, env = "HERALD_LISTEN_MAX_REQUESTS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_requests: u64,
    /// How long the target may take to answer a forwarded request.
    #[arg(long, env = "HERALD_LISTEN_FORWARD_TIMEOUT_SECS", default_value_t = 30)]
    pub forward_timeout_secs: u64,
    /// Base URL of a `herald serve` whose relay channel to receive from.
    #[arg(long, env = "HERALD_RELAY_URL", value_name = "BASE_URL", requires_all = ["token", "channel"])]
    pub relay: Option<String>,
    /// Token the relay's server accepts (its admin token, or one scoped to an app).
    #[arg(long, env = "HERALD_RELAY_TOKEN", hide_env_values = true, requires = "relay")]
    pub token: Option<String>,
    /// Relay channel id, as `POST /api/v1/relay/` answered it.
    #[arg(long, env = "HERALD_RELAY_CHANNEL", value_name = "ID", requires = "relay")]
    pub channel: Option<String>,
    /// Log filter (tracing EnvFilter syntax); logs go to stderr.
    #[arg(long, env = "HERALD_LOG", default_value = "warn")]
    pub log: String,
}

pub async fn run(args: ListenArgs) -> anyhow::Result<()> {
    config::init_logging(&args.log);
    let listen_config = ListenConfig {
        db: args.db.clone(),
        secrets: args.secret.clone(),
        signature_header: args.signature_header.clone(),
        forward: args.forward.clone(),
        status: args.status,
        max_body_bytes: args.max_body_bytes,
        max_requests: usize::try_from(args.max_requests).unwrap_or(usize::MAX),
        forward_timeout: Duration::from_secs(args.forward_timeout_secs.max(1)),
    };
    let shutdown = CancellationToken::new();
    let listen = Listen::new(&listen_config, shutdown.clone())?;
    let addr = SocketAddr::new(args.host, args.port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read the bound address from this line.
    println!("herald listening on http://{addr}");
    println!("page: http://{addr}/_herald/   history: {}", args.db.display());
    if let Some(target) = &args.forward {
        println!("forwarding to {target}");
    }
    let relay = match (&args.relay, &args.token, &args.channel) {
        (Some(base_url), Some(token), Some(channel)) => Some(RelayConfig {
            base_url: base_url.clone(),
            token: token.clone(),
            channel: channel.clone(),
        }),
        // clap requires all three together.
        _ => None,
    };
    if let Some(relay) = &relay {
        relay.socket_url()?;
        println!("relay: {} → this listener", relay.public_url());
    }
    let mut server = tokio::spawn(listen.serve(listener, relay));
    tokio::select! {
        () = crate::serve::shutdown_signal() => {
            shutdown.cancel();
            server.await.context("the listener task failed")??;
        }
        ended = &mut server => ended.context("the listener task failed")??,
    }
    Ok(())
}
