//! The throttle governor: one per client, shared by its clones and by every task using it.
//!
//! It keeps requests within Dataverse's service protection limits:
//! - a 429 with `Retry-After` pauses every request of the client until the wait has passed;
//! - at most `limit` requests are in flight, where `limit` starts at the ceiling (the smaller of
//!   the configured maximum and the latest `x-ms-dop-hint`), halves on an execution-time or
//!   concurrency refusal, and grows by one after a run of successes, never above the ceiling;
//! - refusals are counted by limit, and the time the client was paused is summed.

use super::clock::Clock;
use crate::error::ThrottleLimit;
use serde::{Deserialize, Serialize};
use std::pin::pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Consecutive successes after which the permitted concurrency grows by one.
const SUCCESSES_TO_GROW: u32 = 8;

/// What throttling a client has met so far.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottleStats {
    /// Requests refused for the number of requests (`0x80072322`).
    pub requests: u64,
    /// Requests refused for combined execution time (`0x80072321`).
    pub execution_time: u64,
    /// Requests refused for concurrency (`0x80072326`).
    pub concurrency: u64,
    /// Requests refused with HTTP 429 without one of the three codes.
    pub unspecified: u64,
    /// How long the client was paused by `Retry-After` in all (overlapping pauses count once).
    pub paused: Duration,
}

impl ThrottleStats {
    /// Every refusal, whatever the limit.
    pub fn refused(&self) -> u64 {
        self.requests + self.execution_time + self.concurrency + self.unspecified
    }

    /// What was met between `earlier` and `self` (two snapshots of one client).
    pub fn since(&self, earlier: &ThrottleStats) -> ThrottleStats {
        ThrottleStats {
            requests: self.requests.saturating_sub(earlier.requests),
            execution_time: self.execution_time.saturating_sub(earlier.execution_time),
            concurrency: self.concurrency.saturating_sub(earlier.concurrency),
            unspecified: self.unspecified.saturating_sub(earlier.unspecified),
            paused: self.paused.saturating_sub(earlier.paused),
        }
    }

    fn count(&mut self, limit: Option<ThrottleLimit>) {
        match limit {
            Some(ThrottleLimit::Requests) => self.requests += 1,
            Some(ThrottleLimit::ExecutionTime) => self.execution_time += 1,
            Some(ThrottleLimit::Concurrency) => self.concurrency += 1,
            None => self.unspecified += 1,
        }
    }
}

/// Shared throttling state of one client.
#[derive(Debug)]
pub(crate) struct Governor {
    state: Mutex<State>,
    /// Woken whenever a slot frees or the limit grows.
    changed: Notify,
}

#[derive(Debug)]
struct State {
    /// The configured maximum of requests in flight.
    max: usize,
    /// The smaller of `max` and the latest dop hint.
    ceiling: usize,
    /// Requests permitted in flight now.
    limit: usize,
    in_flight: usize,
    successes: u32,
    paused_until: Option<Instant>,
    stats: ThrottleStats,
}

/// A slot for one request in flight; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    governor: &'a Governor,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.governor.lock().in_flight -= 1;
        self.governor.changed.notify_waiters();
    }
}

impl Governor {
    /// A governor allowing at most `max` requests in flight (at least 1).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            state: Mutex::new(State {
                max,
                ceiling: max,
                limit: max,
                in_flight: 0,
                successes: 0,
                paused_until: None,
                stats: ThrottleStats::default(),
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until the client is not paused and a slot is free, then takes the slot.
    pub async fn acquire(&self, clock: &dyn Clock) -> Permit<'_> {
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            let pause = {
                let mut state = self.lock();
                let now = clock.now();
                match state.paused_until.filter(|until| *until > now) {
                    Some(until) => Some(until - now),
                    None if state.in_flight < state.limit => {
                        state.in_flight += 1;
                        return Permit { governor: self };
                    }
                    None => None,
                }
            };
            match pause {
                Some(wait) => clock.sleep(wait).await,
                None => changed.await,
            }
        }
    }

    /// Takes the server's `x-ms-dop-hint` into account.
    pub fn observe_dop_hint(&self, hint: usize) {
        let mut state = self.lock();
        state.ceiling = hint.clamp(1, state.max);
        state.limit = state.limit.min(state.ceiling);
    }

    /// A request succeeded: after a run of successes, one more may be in flight.
    pub fn succeeded(&self) {
        let mut state = self.lock();
        state.successes += 1;
        if state.successes >= SUCCESSES_TO_GROW && state.limit < state.ceiling {
            state.limit += 1;
            state.successes = 0;
            drop(state);
            self.changed.notify_waiters();
        }
    }

    /// A request was refused by service protection: count it, pause every request until
    /// `retry_after` has passed, and halve the concurrency for execution-time and concurrency
    /// refusals.
    pub fn throttled(
        &self,
        clock: &dyn Clock,
        limit: Option<ThrottleLimit>,
        retry_after: Option<Duration>,
    ) {
        let mut state = self.lock();
        state.stats.count(limit);
        state.successes = 0;
        if matches!(
            limit,
            Some(ThrottleLimit::ExecutionTime | ThrottleLimit::Concurrency)
        ) {
            state.limit = (state.limit / 2).max(1);
        }
        if let Some(wait) = retry_after {
            let now = clock.now();
            let until = now + wait;
            let paused_from = state.paused_until.filter(|u| *u > now).unwrap_or(now);
            if until > paused_from {
                state.stats.paused += until - paused_from;
                state.paused_until = Some(until);
            }
        }
    }

    /// The throttling met so far.
    pub fn stats(&self) -> ThrottleStats {
        self.lock().stats
    }

    /// Requests permitted in flight now.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::clock::VirtualClock;

    #[test]
    fn refusals_halve_the_limit_and_successes_raise_it_to_the_ceiling() {
        let clock = VirtualClock::new();
        let governor = Governor::new(16);
        governor.observe_dop_hint(4);
        assert_eq!(governor.limit(), 4);
        governor.throttled(&clock, Some(ThrottleLimit::ExecutionTime), None);
        assert_eq!(governor.limit(), 2);
        governor.throttled(&clock, Some(ThrottleLimit::Requests), None);
        assert_eq!(governor.limit(), 2, "a request-count refusal only pauses");
        for _ in 0..10 * SUCCESSES_TO_GROW {
            governor.succeeded();
        }
        assert_eq!(governor.limit(), 4, "never above the dop hint");
        let stats = governor.stats();
        assert_eq!(
            (stats.execution_time, stats.requests, stats.refused()),
            (1, 1, 2)
        );
    }

    #[test]
    fn overlapping_pauses_count_once() {
        let clock = VirtualClock::new();
        let governor = Governor::new(4);
        governor.throttled(&clock, None, Some(Duration::from_secs(30)));
        governor.throttled(&clock, None, Some(Duration::from_secs(20)));
        governor.throttled(&clock, None, Some(Duration::from_secs(40)));
        assert_eq!(governor.stats().paused, Duration::from_secs(40));
        assert_eq!(governor.stats().unspecified, 3);
    }

    #[tokio::test]
    async fn a_pause_holds_every_request_until_it_has_passed() {
        let clock = VirtualClock::new();
        let governor = Governor::new(4);
        governor.throttled(&clock, None, Some(Duration::from_secs(30)));
        let permit = governor.acquire(&clock).await;
        assert_eq!(clock.total_slept(), Duration::from_secs(30));
        drop(permit);
        let _again = governor.acquire(&clock).await;
        assert_eq!(clock.total_slept(), Duration::from_secs(30));
    }
}
