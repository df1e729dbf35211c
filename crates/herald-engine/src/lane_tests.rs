use super::*;

fn cfg() -> LaneConfig {
    LaneConfig {
        max_in_flight: 16,
        initial_limit: 4,
        open_after: 3,
        first_probe: Duration::from_secs(1),
        max_probe: Duration::from_secs(8),
        decrease_cooldown: Duration::from_secs(1),
    }
}

/// A lane with `n` jobs queued and `running` of them started.
fn lane(n: usize, running: usize) -> Lane<usize> {
    let mut lane = Lane::new(&cfg());
    for i in 0..n {
        lane.push(i);
    }
    for _ in 0..running {
        lane.start();
    }
    lane
}

#[test]
fn the_limit_grows_on_fast_successes_while_it_is_used_up_to_the_cap() {
    let (c, now) = (cfg(), Instant::now());
    let mut l = lane(100, 4);
    assert_eq!(l.limit(), 4);
    assert!(!l.wants_slot(now), "at its limit");
    l.finished(&c, now, Answer::Success { fast: true });
    assert_eq!(l.limit(), 5);
    for _ in 0..40 {
        while l.wants_slot(now) {
            l.start();
        }
        l.finished(&c, now, Answer::Success { fast: true });
    }
    assert_eq!(l.limit(), 16, "capped by the per-endpoint maximum");
}

#[test]
fn slow_successes_and_an_unused_limit_do_not_grow_it() {
    let (c, now) = (cfg(), Instant::now());
    let mut l = lane(100, 4);
    l.finished(&c, now, Answer::Success { fast: false });
    assert_eq!(l.limit(), 4, "slow 2xx");
    let mut l = lane(100, 1);
    l.finished(&c, now, Answer::Success { fast: true });
    assert_eq!(l.limit(), 4, "one request in flight out of four");
}

#[test]
fn failures_halve_the_limit_once_per_cooldown_and_never_below_one() {
    let (c, t0) = (cfg(), Instant::now());
    let mut l = lane(100, 4);
    for _ in 0..4 {
        l.finished(&c, t0, Answer::Overloaded);
    }
    assert_eq!(l.limit(), 2, "a burst of failures halves once");
    l.start();
    l.finished(&c, t0 + Duration::from_millis(999), Answer::Overloaded);
    assert_eq!(l.limit(), 2, "still cooling down");
    l.start();
    l.finished(&c, t0 + Duration::from_secs(1), Answer::Overloaded);
    assert_eq!(l.limit(), 1);
    l.start();
    l.finished(&c, t0 + Duration::from_secs(5), Answer::Overloaded);
    assert_eq!(l.limit(), 1, "never below one");
    l.start();
    l.finished(&c, t0 + Duration::from_secs(9), Answer::Rejected);
    assert_eq!(l.limit(), 1, "a 4xx says nothing about load");
}

#[test]
fn consecutive_unanswered_attempts_open_the_circuit_and_answers_reset_the_count() {
    let (c, now) = (cfg(), Instant::now());
    let mut l = lane(100, 4);
    assert_eq!(l.finished(&c, now, Answer::Unreachable), Transition::None);
    assert_eq!(l.finished(&c, now, Answer::Unreachable), Transition::None);
    // A 5xx is an answer: the endpoint is reachable.
    assert_eq!(l.finished(&c, now, Answer::Overloaded), Transition::None);
    l.start();
    l.start();
    l.start();
    assert_eq!(l.finished(&c, now, Answer::Unreachable), Transition::None);
    assert_eq!(l.finished(&c, now, Answer::Unreachable), Transition::None);
    assert!(!l.is_open());
    assert_eq!(l.finished(&c, now, Answer::Unreachable), Transition::Opened);
    assert!(l.is_open());
    assert_eq!(l.probe_at(), Some(now + Duration::from_secs(1)));
}

#[test]
fn an_open_circuit_sends_one_probe_at_a_time_at_doubling_intervals() {
    let (c, t0) = (cfg(), Instant::now());
    let mut l = lane(10, 3);
    for _ in 0..3 {
        l.finished(&c, t0, Answer::Unreachable);
    }
    assert!(l.is_open());
    assert!(!l.wants_slot(t0), "no probe before its time");
    let t1 = t0 + Duration::from_secs(1);
    assert!(l.wants_slot(t1));
    assert_eq!(l.start(), Some(3));
    assert!(
        !l.wants_slot(t1 + Duration::from_secs(60)),
        "one probe in flight at a time"
    );
    assert_eq!(l.finished(&c, t1, Answer::Unreachable), Transition::None);
    assert_eq!(l.probe_at(), Some(t1 + Duration::from_secs(2)));
    for expected in [4, 8, 8] {
        let t = l.probe_at().unwrap();
        l.start();
        l.finished(&c, t, Answer::Unreachable);
        assert_eq!(
            l.probe_at(),
            Some(t + Duration::from_secs(expected)),
            "capped at max_probe"
        );
    }
    assert!(l.is_open());
}

#[test]
fn a_probe_time_with_nothing_to_send_backs_off_like_a_failed_probe() {
    let (c, t0) = (cfg(), Instant::now());
    let mut l = lane(3, 3);
    for _ in 0..3 {
        l.finished(&c, t0, Answer::Unreachable);
    }
    let mut now = l.probe_at().unwrap();
    for expected in [2, 4, 8, 8] {
        l.probe_found_nothing(&c, now);
        assert_eq!(l.probe_at(), Some(now + Duration::from_secs(expected)));
        now = l.probe_at().unwrap();
    }
    assert!(l.is_open(), "still open: nothing answered");
    let mut closed = lane(1, 0);
    closed.probe_found_nothing(&c, t0);
    assert_eq!(closed.probe_at(), None, "a closed circuit has no probe time");
}

#[test]
fn an_attempt_not_sent_moves_neither_the_limit_nor_the_circuit() {
    let (c, t0) = (cfg(), Instant::now());
    let mut l = lane(10, 4);
    l.finished(&c, t0, Answer::Unreachable);
    l.finished(&c, t0, Answer::Unreachable);
    assert_eq!(l.finished(&c, t0, Answer::NotSent), Transition::None);
    assert_eq!(l.limit(), 2, "halved once by the failures, not again");
    // Still two unanswered in a row: the third opens it.
    assert_eq!(l.finished(&c, t0, Answer::Unreachable), Transition::Opened);
    let t1 = l.probe_at().unwrap();
    l.start();
    assert_eq!(l.finished(&c, t1, Answer::NotSent), Transition::None);
    assert!(l.is_open(), "a probe not sent proves nothing");
    assert_eq!(
        l.probe_at(),
        Some(t1 + c.first_probe),
        "the next waits its interval again"
    );
}

#[test]
fn any_answer_to_a_probe_closes_the_circuit() {
    let (c, t0) = (cfg(), Instant::now());
    for answer in [Answer::Success { fast: false }, Answer::Overloaded, Answer::Rejected] {
        let mut l = lane(10, 3);
        for _ in 0..3 {
            l.finished(&c, t0, Answer::Unreachable);
        }
        let t1 = l.probe_at().unwrap();
        l.start();
        assert_eq!(l.finished(&c, t1, answer), Transition::Closed, "{answer:?}");
        assert!(!l.is_open());
        assert!(l.wants_slot(t1), "back to normal sending");
    }
}

#[test]
fn an_attempt_that_sent_nothing_changes_neither_limit_nor_circuit() {
    let (c, t0) = (cfg(), Instant::now());
    let mut l = lane(100, 4);
    for _ in 0..4 {
        l.finished(&c, t0, Answer::NotSent);
    }
    assert_eq!(l.limit(), 4, "no halving");
    for _ in 0..4 {
        l.start();
    }
    l.finished(&c, t0, Answer::Unreachable);
    l.finished(&c, t0, Answer::Unreachable);
    l.finished(&c, t0, Answer::NotSent);
    assert_eq!(
        l.finished(&c, t0, Answer::Unreachable),
        Transition::Opened,
        "the unanswered count was not reset"
    );
    let t1 = l.probe_at().unwrap();
    l.start();
    assert_eq!(l.finished(&c, t1, Answer::NotSent), Transition::None);
    assert!(l.is_open(), "a probe that sent nothing does not close it");
    assert_eq!(l.probe_at(), Some(t1 + Duration::from_secs(1)), "nor doubles its wait");
}

#[test]
fn a_late_answer_while_open_closes_the_circuit_too() {
    let (c, t0) = (cfg(), Instant::now());
    let mut l = lane(10, 4);
    for _ in 0..3 {
        l.finished(&c, t0, Answer::Unreachable);
    }
    assert!(l.is_open());
    assert_eq!(l.finished(&c, t0, Answer::Success { fast: true }), Transition::Closed);
}

#[test]
fn the_endpoints_own_cap_bounds_what_the_adaptive_limit_allows() {
    let now = Instant::now();
    let mut l = lane(10, 0);
    l.set_cap(Some(2));
    l.start();
    l.start();
    assert!(!l.wants_slot(now), "at its cap, under a limit of 4");
    l.set_cap(None);
    assert!(l.wants_slot(now));
}

#[test]
fn a_serial_lane_sends_one_at_a_time_and_its_failed_head_blocks_it() {
    let (c, now) = (cfg(), Instant::now());
    let mut l = lane(3, 0);
    l.set_serial(&c, true);
    assert_eq!(l.start(), Some(0));
    assert!(!l.wants_slot(now), "one in flight at most");
    // Refused many times over: no circuit, no halving.
    for _ in 0..10 {
        assert_eq!(l.finished(&c, now, Answer::Unreachable), Transition::None);
        assert!(!l.is_open());
        l.retry_head(0);
        assert_eq!(l.start(), Some(0));
    }
    l.finished(&c, now, Answer::Overloaded);
    l.await_retry();
    assert!(!l.wants_slot(now), "1 and 2 wait behind the head's retry");
    assert!(!l.is_idle(), "a lane awaiting a retry is not forgotten");
    l.retry_head(0);
    assert_eq!(l.start(), Some(0), "the head goes first");
    l.finished(&c, now, Answer::Success { fast: true });
    assert_eq!(l.start(), Some(1));
    assert!(!l.wants_slot(now));
    l.set_serial(&c, false);
    assert!(l.wants_slot(now), "back to a concurrent lane");
}

#[test]
fn fair_shares_leave_a_share_free_for_the_next_lane() {
    assert_eq!(fair_share(512, 0), 512);
    assert_eq!(fair_share(512, 1), 256);
    assert_eq!(fair_share(512, 40), 12);
    for active in 1..=200 {
        let share = fair_share(512, active);
        if share > 1 {
            assert!(
                512 - active * share >= share,
                "{active} lanes at their share leave a share free"
            );
        }
    }
    assert_eq!(fair_share(512, 1000), 1, "never zero");
}
