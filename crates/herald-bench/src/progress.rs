//! The progress bar on stderr, which reads the shared counters and the sink
//! while the run goes on; separate so `run` reads as the measurement alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::Sink;
use crate::load::{Counters, Limit};

pub(crate) const PHASE_SENDING: u64 = 0;
pub(crate) const PHASE_DRAINING: u64 = 1;

/// A progress bar on stderr (hidden when stderr is not a terminal): time or
/// messages while sending, then deliveries while draining.
pub(crate) async fn show_progress(
    counters: Arc<Counters>,
    sink: Sink,
    fanout: u64,
    limit: Limit,
    started: Instant,
    phase: Arc<AtomicU64>,
) {
    let style = ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {prefix} | {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let first_len = match limit {
        Limit::Count(n) => n,
        Limit::Time(d) => d.as_secs(),
    };
    let bar = ProgressBar::new(first_len).with_style(style);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut draining = false;
    let _clear = ClearOnDrop(bar.clone());
    loop {
        tick.tick().await;
        let accepted = counters.accepted.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        if !draining && phase.load(Ordering::Relaxed) == PHASE_DRAINING {
            draining = true;
        }
        match (draining, limit) {
            (false, Limit::Count(n)) => {
                bar.set_prefix("messages");
                bar.set_length(n);
                bar.set_position(accepted);
            }
            (false, Limit::Time(d)) => {
                bar.set_prefix("seconds");
                bar.set_length(d.as_secs());
                bar.set_position(started.elapsed().as_secs());
            }
            (true, _) => {
                bar.set_prefix("deliveries");
                bar.set_length(accepted * fanout);
                bar.set_position(sink.unique());
            }
        }
        bar.set_message(format!(
            "accepted {accepted} ({:.0}/s), delivered {}, errors {}",
            accepted as f64 / secs,
            sink.unique(),
            counters.error_count()
        ));
    }
}

/// Clears the bar when the progress task is aborted.
struct ClearOnDrop(ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
