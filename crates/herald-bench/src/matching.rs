//! Matching what arrived at the sink against what the server accepted, by
//! `webhook-id` and endpoint: deliveries, duplicates, strays and latency
//! percentiles. Pure functions over the send log, so they are unit-tested
//! without a server.

use std::collections::HashMap;
use std::time::Duration;

use crate::load::{NOT_ACCEPTED, SendLog, UNKNOWN_ID};
use crate::report::Latency;
use crate::sink::Arrival;

/// Arrivals matched against what was accepted.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Matched {
    pub(crate) delivered: u64,
    pub(crate) duplicates: u64,
    pub(crate) unexpected: u64,
    pub(crate) latency: Latency,
    /// How long after `opened` deliveries arrived (0 for earlier ones).
    pub(crate) since_open: Latency,
    pub(crate) last_arrival: Option<Duration>,
}

/// Percentiles of microsecond samples, in milliseconds.
fn percentiles(mut samples: Vec<u64>) -> Latency {
    samples.sort_unstable();
    let pct = |p: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i] as f64 / 1000.0
    };
    Latency {
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: pct(1.0),
    }
}

/// An arrival counts as delivered when its `webhook-id` is the id the
/// server accepted its payload's sequence number under. `opened` is when the
/// sink started answering, to tell how a backlog drained.
pub(crate) fn match_arrivals(log: &SendLog, arrivals: &HashMap<(u64, u32), Arrival>, opened: Duration) -> Matched {
    let mut out = Matched::default();
    let mut latencies: Vec<u64> = Vec::with_capacity(arrivals.len());
    let mut since_open: Vec<u64> = Vec::with_capacity(arrivals.len());
    let opened_us = opened.as_micros() as u64;
    let mut last = None::<u64>;
    for (&(id, _endpoint), a) in arrivals {
        out.duplicates += u64::from(a.copies.saturating_sub(1));
        let seq = a.seq as usize;
        let accepted_as = log.id.get(seq).copied().unwrap_or(NOT_ACCEPTED);
        // A batch's request id names the batch: its messages match by
        // sequence number alone.
        let id_ok = a.batched || accepted_as == id || accepted_as == UNKNOWN_ID;
        if accepted_as == NOT_ACCEPTED || !id_ok {
            out.unexpected += 1;
            continue;
        }
        out.delivered += 1;
        last = Some(last.map_or(a.first_us, |l| l.max(a.first_us)));
        since_open.push(a.first_us.saturating_sub(opened_us));
        if let Some(&sent) = log.at_us.get(seq) {
            latencies.push(a.first_us.saturating_sub(sent));
        }
    }
    out.latency = percentiles(latencies);
    out.since_open = percentiles(since_open);
    out.last_arrival = last.map(Duration::from_micros);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id_hash;

    fn log(entries: &[(u64, u64)]) -> SendLog {
        SendLog {
            at_us: entries.iter().map(|e| e.0).collect(),
            id: entries.iter().map(|e| e.1).collect(),
        }
    }

    fn arrival(copies: u32, first_us: u64, seq: u64) -> Arrival {
        Arrival {
            copies,
            first_us,
            seq,
            batched: false,
        }
    }

    #[test]
    fn arrivals_match_by_the_accepted_id() {
        // seq 0 accepted as "a", 1 as "b", 2 never accepted.
        let log = log(&[(1_000, id_hash("a")), (2_000, id_hash("b")), (3_000, NOT_ACCEPTED)]);
        let arrivals = HashMap::from([
            ((id_hash("a"), 0), arrival(1, 5_000, 0)),
            ((id_hash("a"), 1), arrival(3, 9_000, 0)),
            ((id_hash("b"), 0), arrival(1, 8_000, 1)),
            // seq 1's payload under an id the server never gave it.
            ((id_hash("x"), 0), arrival(1, 7_000, 1)),
            // seq 2 was never accepted.
            ((id_hash("c"), 0), arrival(1, 8_000, 2)),
        ]);
        let m = match_arrivals(&log, &arrivals, Duration::ZERO);
        assert_eq!(m.delivered, 3);
        assert_eq!(m.duplicates, 2);
        assert_eq!(m.unexpected, 2);
        assert_eq!(m.last_arrival, Some(Duration::from_micros(9_000)));
        // Latencies 4, 6 and 8 ms.
        assert_eq!(m.latency.p50, 6.0);
        assert_eq!(m.latency.max, 8.0);
        // Arrivals at 5, 8 and 9 ms; the sink opened at 7 ms.
        let opened = match_arrivals(&log, &arrivals, Duration::from_millis(7)).since_open;
        assert_eq!((opened.p50, opened.max), (1.0, 2.0));
    }

    #[test]
    fn messages_of_a_batch_match_by_sequence_number() {
        let log = log(&[(0, id_hash("a")), (0, id_hash("b")), (0, NOT_ACCEPTED)]);
        let batched = |seq| Arrival {
            batched: true,
            ..arrival(1, 1_000, seq)
        };
        let arrivals = HashMap::from([((1, 0), batched(0)), ((2, 0), batched(1)), ((3, 0), batched(2))]);
        let m = match_arrivals(&log, &arrivals, Duration::ZERO);
        assert_eq!((m.delivered, m.unexpected), (2, 1), "seq 2 was never accepted");
        assert_eq!(
            crate::sink::batch_seqs(br#"[{"seq":4,"x":1},{"seq":9}]"#),
            Some(vec![4, 9])
        );
    }

    #[test]
    fn answers_without_an_id_match_by_sequence_number() {
        let log = log(&[(0, UNKNOWN_ID)]);
        let arrivals = HashMap::from([((id_hash("z"), 0), arrival(1, 2_500, 0))]);
        let m = match_arrivals(&log, &arrivals, Duration::ZERO);
        assert_eq!((m.delivered, m.unexpected), (1, 0));
        assert_eq!(m.latency.p99, 2.5);
    }

    #[test]
    fn nothing_arrived() {
        let m = match_arrivals(&log(&[(0, id_hash("a"))]), &HashMap::new(), Duration::ZERO);
        assert_eq!(m, Matched::default());
    }
}
