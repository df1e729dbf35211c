//! One attempt: build the body and headers, send through the shared
//! [`Transport`], report back to the scheduler. Runs as its own task, so a
//! slow endpoint holds only its own slot, and ends at once when its
//! endpoint is deleted.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_core::AttemptId;
use herald_core::metrics::Histogram;
use herald_core::model::{Attempt, AttemptErrorKind, DeliveryStatus, DeliveryTarget, TriggerType, truncate_response};
use herald_core::retry::parse_retry_after;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::lane::Answer;
use crate::request::{self, Unsent};
use crate::ticket::Job;
use crate::transforms::Transforms;
use crate::transport::{Outbound, Reply, Transport, wire_uri};

/// Bounds of `herald_attempt_duration_seconds`, in microseconds: 5 ms to
/// 30 s (twice the default timeout), the usual 1-2.5-5 steps.
pub const ATTEMPT_DURATION_BOUNDS_US: &[u64] = &[
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// How long attempts took, from the request's start to the end of the
/// answer (or the failure), by outcome.
#[derive(Debug)]
pub struct AttemptDurations {
    pub success: Histogram,
    pub failure: Histogram,
}

impl Default for AttemptDurations {
    fn default() -> Self {
        Self {
            success: Histogram::new(ATTEMPT_DURATION_BOUNDS_US, 1_000_000),
            failure: Histogram::new(ATTEMPT_DURATION_BOUNDS_US, 1_000_000),
        }
    }
}

impl AttemptDurations {
    #[inline]
    pub(crate) fn observe(&self, success: bool, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        if success { &self.success } else { &self.failure }.observe(us);
    }
}

/// An endpoint's delivery settings with its URL already in wire form.
pub(crate) struct Target {
    pub spec: DeliveryTarget,
    /// Why the URL cannot be sent to, if it cannot.
    pub uri: Result<http::Uri, String>,
}

impl Target {
    pub fn new(spec: DeliveryTarget) -> Self {
        let uri = wire_uri(spec.url.as_str());
        Self { spec, uri }
    }
}

/// A finished attempt, back at the scheduler.
pub(crate) struct Done {
    /// The delivery it was, or a batch's (in the order they were sent).
    pub jobs: Vec<Job>,
    pub target: Arc<Target>,
    pub started_at: DateTime<Utc>,
    /// `None`: canceled before an answer (the endpoint was deleted).
    pub reply: Option<Reply>,
}

/// Sends one request: a delivery, or a batch of them (a batching
/// endpoint's, whose body is their array even when it holds one).
pub(crate) async fn run(
    transport: Arc<Transport>,
    transforms: Arc<Transforms>,
    target: Arc<Target>,
    jobs: Vec<Job>,
    cancel: CancellationToken,
    done: mpsc::UnboundedSender<Done>,
) {
    let first = &jobs[0].job;
    let span = tracing::debug_span!("delivery.attempt", msg_id = %first.msg_id, endpoint_id = %first.endpoint_id, batch = jobs.len());
    async move {
        let started_at = Utc::now();
        let reply = match &target.uri {
            Ok(uri) => {
                let spec = &target.spec;
                let building = std::time::Instant::now();
                let built = tokio::select! {
                    built = request::build(&target, &jobs, started_at, &transforms) => Some(built),
                    _ = cancel.cancelled() => None,
                };
                match built {
                    // Canceled: the endpoint was deleted.
                    None => None,
                    // A failed transformation: recorded like any failed
                    // attempt, retried on the schedule, nothing sent.
                    Some((_, Err(Unsent::Transformation(why)))) => {
                        Some(Reply::failed(AttemptErrorKind::Transformation, why, building.elapsed()))
                    }
                    Some((_, Err(Unsent::Body(why)))) => {
                        Some(Reply::failed(AttemptErrorKind::Body, why.to_string(), Duration::ZERO))
                    }
                    Some((id, Ok(body))) => {
                        let headers = request::headers(spec, &id, started_at, &body);
                        let send = transport.post(Outbound {
                            uri,
                            headers,
                            body,
                            timeout: spec.timeout,
                        });
                        tokio::select! {
                            reply = send => Some(reply),
                            _ = cancel.cancelled() => None,
                        }
                    }
                }
            }
            Err(why) => Some(Reply::failed(AttemptErrorKind::Other, why.clone(), Duration::ZERO)),
        };
        let _ = done.send(Done {
            jobs,
            target,
            started_at,
            reply,
        });
    }
    .instrument(span)
    .await
}

/// What an answer says about the endpoint's load and reachability.
pub(crate) fn answer(reply: &Reply, timeout: Duration) -> Answer {
    match reply.error {
        None => Answer::Success {
            fast: reply.duration <= timeout / 4,
        },
        Some(AttemptErrorKind::Status) if reply.status == 429 || reply.status >= 500 => Answer::Overloaded,
        Some(AttemptErrorKind::Status | AttemptErrorKind::Blocked) => Answer::Rejected,
        // A connection that broke mid-answer was reached.
        Some(AttemptErrorKind::Other) => Answer::Overloaded,
        Some(AttemptErrorKind::Timeout | AttemptErrorKind::Connect | AttemptErrorKind::Dns | AttemptErrorKind::Tls) => {
            Answer::Unreachable
        }
        // No request was made: nothing learned about the endpoint.
        Some(AttemptErrorKind::Body | AttemptErrorKind::Transformation) => Answer::NotSent,
    }
}

/// The history record of `job`'s attempt (each message of a batch has its
/// own, with the batch's answer).
pub(crate) fn record(job: &Job, target: &Target, started_at: DateTime<Utc>, reply: &Reply) -> Attempt {
    let job = &job.job;
    Attempt {
        id: AttemptId::new(),
        msg_id: job.msg_id.clone(),
        endpoint_id: job.endpoint_id.clone(),
        app_id: job.app_id.clone(),
        url: target.spec.url.as_str().to_owned(),
        response_status_code: reply.status,
        response: truncate_response(&reply.body),
        response_duration_ms: u64::try_from(reply.duration.as_millis()).unwrap_or(u64::MAX),
        status: if reply.is_success() {
            DeliveryStatus::Success
        } else {
            DeliveryStatus::Fail
        },
        error_kind: reply.error,
        trigger_type: if job.manual {
            TriggerType::Manual
        } else {
            TriggerType::Scheduled
        },
        attempt_number: job.attempts + 1,
        created_at: started_at,
    }
}

/// The wait before the next attempt, in real (scaled) time; `None` when
/// the schedule is exhausted.
pub(crate) fn retry_delay(
    target: &DeliveryTarget,
    failed_attempts: u32,
    reply: &Reply,
    time_scale: f64,
) -> Option<Duration> {
    let mut wait = target.retry.next_wait(failed_attempts, &mut rand::rng())?;
    if matches!(reply.status, 429 | 503)
        && let Some(asked) = reply
            .retry_after
            .as_deref()
            .and_then(|v| parse_retry_after(v, Utc::now(), target.retry.schedule.max_step()))
    {
        wait = wait.max(asked);
    }
    Some(scaled(wait, time_scale))
}

/// A delay divided by `HERALD_TIME_SCALE` (a testing aid).
pub(crate) fn scaled(d: Duration, time_scale: f64) -> Duration {
    d.div_f64(time_scale.max(f64::MIN_POSITIVE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn reply(status: u16, error: Option<AttemptErrorKind>, ms: u64) -> Reply {
        Reply {
            status,
            body: Bytes::new(),
            duration: Duration::from_millis(ms),
            error,
            retry_after: None,
        }
    }

    #[test]
    fn answers_say_what_the_lane_needs_to_know() {
        let t = Duration::from_secs(4);
        assert_eq!(answer(&reply(200, None, 10), t), Answer::Success { fast: true });
        assert_eq!(answer(&reply(204, None, 1500), t), Answer::Success { fast: false });
        for s in [429, 500, 502, 503, 504] {
            assert_eq!(
                answer(&reply(s, Some(AttemptErrorKind::Status), 5), t),
                Answer::Overloaded,
                "{s}"
            );
        }
        for s in [301, 400, 404, 410] {
            assert_eq!(
                answer(&reply(s, Some(AttemptErrorKind::Status), 5), t),
                Answer::Rejected,
                "{s}"
            );
        }
        for kind in [
            AttemptErrorKind::Timeout,
            AttemptErrorKind::Connect,
            AttemptErrorKind::Dns,
            AttemptErrorKind::Tls,
        ] {
            assert_eq!(answer(&reply(0, Some(kind), 5), t), Answer::Unreachable, "{kind:?}");
        }
        assert_eq!(
            answer(&reply(0, Some(AttemptErrorKind::Blocked), 0), t),
            Answer::Rejected
        );
        assert_eq!(answer(&reply(0, Some(AttemptErrorKind::Body), 0), t), Answer::NotSent);
        assert_eq!(
            answer(&reply(0, Some(AttemptErrorKind::Transformation), 5), t),
            Answer::NotSent
        );
    }
}
