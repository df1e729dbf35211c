//! `herald serve`: opens the store, starts the engine, the retention task
//! and the API, and shuts them down in order on SIGTERM or Ctrl-C: first the
//! API stops taking requests, then the engine finishes or hands back its work
//! (and retention stops after its current batch), then the store commits what
//! is queued and closes.

use std::fs;

use anyhow::Context;
use herald_api::{ApiConfig, AppState};
use herald_engine::retention::{self, RetentionConfig};
use herald_engine::{Engine, EngineConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{self, ServeArgs};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    config::init_logging(&args.storage.log);
    fs::create_dir_all(&args.storage.data_dir)
        .with_context(|| format!("creating data dir {}", args.storage.data_dir.display()))?;
    // One process per embedded database: a second would corrupt claims.
    let lock_path = args.storage.data_dir.join("herald.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    lock.try_lock()
        .map_err(|_| anyhow::anyhow!("another herald process is using {}", args.storage.data_dir.display()))?;

    let open_files = config::raise_open_file_limit();
    let connections = config::connection_limits(&args, open_files);
    let private_targets = config::private_targets(&args)?;
    let time_scale = config::time_scale()?;
    let retention_period = config::retention(&args)?;
    let backlog_refresh = config::backlog_refresh(&args)?;
    let claim_ttl = config::lease(&args)?;
    let key = config::encryption_key(&args)?;
    // Relay channel ids are signed with a key of their own, derived from the
    // encryption key so every node sharing a database accepts the same ids.
    let relay_key = herald_api::relay::ChannelKey::derive(key.to_base64().as_bytes());
    let (admin_token, generated) = config::admin_token(&args)?;
    let database = config::Database::from_args(&args.storage)?;
    let node = config::node_id(&args.storage)?;

    let store = database.open(key, args.database_pool_size).await?;
    // Background tasks run in the process that created them: any of this
    // node's still "running" belonged to its run that has stopped, and never
    // will finish. Other nodes' running tasks are theirs to settle.
    let interrupted = store
        .fail_interrupted_tasks(&node)
        .await
        .context("marking interrupted background tasks")?;
    if interrupted > 0 {
        tracing::warn!(
            tasks = interrupted,
            "background tasks interrupted by the last stop are marked failed"
        );
    }
    let engine_stop = CancellationToken::new();
    let engine = Engine::start(
        store.clone(),
        EngineConfig {
            max_in_flight: args.max_in_flight.max(1),
            max_in_flight_per_endpoint: args.max_in_flight_per_endpoint.max(1),
            max_resident: args.max_resident.max(1),
            max_resident_bytes: args.max_resident_bytes.max(1),
            node: node.clone(),
            time_scale,
            private_targets,
            require_https: args.require_https,
            backlog_refresh,
            claim_ttl,
            ..EngineConfig::default()
        },
        engine_stop.clone(),
    )
    .await?;

    let retention_stop = CancellationToken::new();
    let retention_task = tokio::spawn(retention::run(
        store.clone(),
        RetentionConfig::for_period(retention_period, herald_api::IDEMPOTENCY_WINDOW),
        retention_stop.clone(),
    ));

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    if generated {
        println!(
            "Generated admin token (kept in {}): {admin_token}",
            args.storage.data_dir.join("admin-token").display()
        );
    }
    // Tests and scripts read the bound address from this line.
    println!("herald listening on http://{addr}");
    tracing::info!(
        %addr,
        database = %database,
        max_connections = connections.max_connections,
        "herald started"
    );

    let api_stop = CancellationToken::new();
    let state = AppState::new(
        store.clone(),
        engine.clone(),
        ApiConfig {
            admin_token,
            max_payload_bytes: args.max_payload_bytes,
            require_https: args.require_https,
            connections,
            relay_key,
            relay_limits: herald_api::relay::RelayLimits::default(),
            ui: herald_ui::UiConfig {
                portal_frame_ancestors: args.portal_frame_ancestors.clone(),
            },
            node,
        },
    );
    let server = tokio::spawn(herald_api::serve(listener, state, api_stop.clone()));

    shutdown_signal().await;
    tracing::info!("shutting down: no new requests");
    api_stop.cancel();
    match server.await {
        Ok(Err(e)) => tracing::error!(error = %e, "API server error"),
        Err(e) => tracing::error!(error = %e, "API server task failed"),
        Ok(Ok(())) => {}
    }
    tracing::info!("shutting down: finishing deliveries in flight");
    engine_stop.cancel();
    retention_stop.cancel();
    engine.stopped().await;
    if let Err(e) = retention_task.await {
        tracing::error!(error = %e, "retention task failed");
    }
    store.close().await;
    drop(lock);
    tracing::info!("stopped");
    Ok(())
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
