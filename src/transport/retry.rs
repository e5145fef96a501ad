//! The retry stage: exponential backoff with jitter, `Retry-After` as the minimum wait, caps on
//! attempts and total time, a separate budget for throttling, and errors marked exhausted so
//! that no outer stage retries them again.

use super::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How failed requests are retried.
///
/// Only errors whose [`Error::is_retryable`] is true, and that no inner stage already gave up
/// on ([`Error::is_exhausted`]), are retried:
/// - A service protection refusal (HTTP 429) with a `Retry-After` is retried after exactly that
///   wait for as long as the waits add up to no more than the throttle budget (30 minutes per
///   request by default); these retries do not count against the attempt cap.
/// - Other retryable failures (HTTP 502, 503, 504, timeouts, resets) are retried up to the
///   attempt cap and the time cap, after an exponential backoff (`initial_backoff * 2^(n-1)`,
///   at most `max_backoff`) with random jitter, never shorter than a `Retry-After`.
/// - A connection that cannot be opened (refused, unknown host) is retried once at most.
///
/// The error of a request given up on says once how many attempts were made and over how long.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    max_elapsed: Duration,
    throttle_budget: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 1 s initial backoff, 60 s maximum backoff, 5 minutes in all (throttling
    /// waits excluded), a 30-minute throttle budget.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(300),
            throttle_budget: Duration::from_secs(30 * 60),
        }
    }
}

impl RetryPolicy {
    /// A policy that sends each request once and never retries (throttling included).
    pub fn disabled() -> Self {
        Self::default()
            .with_max_attempts(1)
            .with_throttle_budget(Duration::ZERO)
    }

    /// Sets how many times a request is sent at most for failures other than throttling, the
    /// first included (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the first backoff, doubled at each further attempt.
    pub fn with_initial_backoff(mut self, backoff: Duration) -> Self {
        self.initial_backoff = backoff;
        self
    }

    /// Sets the longest backoff between two attempts (a longer `Retry-After` still wins).
    pub fn with_max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// Sets the time, throttling waits excluded, after which no further attempt starts.
    pub fn with_max_elapsed(mut self, elapsed: Duration) -> Self {
        self.max_elapsed = elapsed;
        self
    }

    /// Sets how long one request may wait in all for service protection refusals that give a
    /// `Retry-After`. Default: 30 minutes.
    pub fn with_throttle_budget(mut self, budget: Duration) -> Self {
        self.throttle_budget = budget;
        self
    }

    /// The most attempts a request gets for failures other than throttling.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The longest a request waits in all for throttling.
    pub fn throttle_budget(&self) -> Duration {
        self.throttle_budget
    }

    /// Runs `operation` until it succeeds, fails for good, or the policy gives up (the error is
    /// then marked exhausted).
    pub(crate) async fn run<T, F, Fut>(&self, clock: &dyn Clock, mut operation: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let start = clock.now();
        let mut tally = Tally::default();
        loop {
            tally.attempts += 1;
            let error = match operation().await {
                Ok(value) => return Ok(value),
                Err(error) if !error.is_retryable() || error.is_exhausted() => return Err(error),
                Err(error) => error,
            };
            let elapsed = clock.now().saturating_duration_since(start);
            match self.next_wait(&error, &mut tally, elapsed) {
                Some(wait) => {
                    tracing::info!(
                        attempt = tally.attempts,
                        kind = ?error.kind(),
                        status = error.status(),
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "retrying after a wait"
                    );
                    clock.sleep(wait).await
                }
                None => return Err(tally.give_up(error, elapsed)),
            }
        }
    }

    /// The wait before the next attempt after `error`, or `None` to give up.
    fn next_wait(&self, error: &Error, tally: &mut Tally, elapsed: Duration) -> Option<Duration> {
        if let (ErrorKind::Throttled, Some(after)) = (error.kind(), error.retry_after()) {
            let waited = tally.throttle_waited + after;
            if waited > self.throttle_budget {
                return None;
            }
            tally.throttle_waited = waited;
            return Some(after);
        }
        tally.failures += 1;
        let cap = if error.is_connect_failure() {
            self.max_attempts.min(2)
        } else {
            self.max_attempts
        };
        if tally.failures >= cap {
            return None;
        }
        let wait = self
            .backoff(tally.failures)
            .max(error.retry_after().unwrap_or_default());
        let spent = elapsed.saturating_sub(tally.throttle_waited);
        (spent + wait <= self.max_elapsed).then_some(wait)
    }

    /// The jittered backoff after failed attempt `attempt` (1-based): half the exponential
    /// delay plus a random part of the other half.
    fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_backoff);
        let half = exponential / 2;
        half + half.mul_f64(random_fraction())
    }
}

/// What one request has gone through so far.
#[derive(Default)]
struct Tally {
    /// Requests sent.
    attempts: u32,
    /// Failures counted against the attempt cap (everything but throttling with a wait).
    failures: u32,
    /// Time waited for throttling.
    throttle_waited: Duration,
}

impl Tally {
    /// `error`, marked exhausted, its message saying once how hard the stage tried.
    fn give_up(&self, error: Error, elapsed: Duration) -> Error {
        let error = error.exhausted();
        if self.attempts > 1 {
            error.with_context(format!(
                "gave up after {} attempts over {:.1} s",
                self.attempts,
                elapsed.as_secs_f64()
            ))
        } else {
            error
        }
    }
}

/// A random number in `[0, 1)` from the standard library's randomly seeded hasher.
fn random_fraction() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::clock::VirtualClock;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn unavailable() -> Error {
        Error::new(ErrorKind::Service, "unavailable")
            .with_status(503)
            .with_retryable(true)
    }

    fn throttled(seconds: u64) -> Error {
        Error::new(ErrorKind::Throttled, "throttled")
            .with_retry_after(Some(Duration::from_secs(seconds)))
    }

    /// Runs `policy` over an operation that fails with `error()` `failures` times, then
    /// succeeds; returns the outcome and the number of calls.
    async fn run_failing(
        policy: &RetryPolicy,
        clock: &VirtualClock,
        failures: u32,
        error: impl Fn() -> Error,
    ) -> (Result<u32>, u32) {
        let calls = AtomicU32::new(0);
        let result = policy
            .run(clock, || {
                let call = calls.fetch_add(1, Ordering::SeqCst);
                let outcome = if call < failures {
                    Err(error())
                } else {
                    Ok(call)
                };
                async move { outcome }
            })
            .await;
        (result, calls.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn backs_off_exponentially_within_bounds() {
        let clock = VirtualClock::new();
        let policy = RetryPolicy::default().with_max_attempts(4);
        let (result, calls) = run_failing(&policy, &clock, u32::MAX, unavailable).await;
        let error = result.unwrap_err();
        assert_eq!(calls, 4);
        assert!(error.is_exhausted());
        assert!(
            error.to_string().contains("gave up after 4 attempts over"),
            "{error}"
        );
        let sleeps = clock.sleeps();
        assert_eq!(sleeps.len(), 3);
        for (i, sleep) in sleeps.iter().enumerate() {
            let full = Duration::from_secs(1 << i);
            assert!(
                *sleep >= full / 2 && *sleep <= full,
                "sleep {i} was {sleep:?}"
            );
        }
    }

    #[test]
    fn backoff_is_jittered() {
        let policy = RetryPolicy::default();
        let waits: std::collections::HashSet<Duration> =
            (0..20).map(|_| policy.backoff(3)).collect();
        assert!(waits.len() > 1, "20 backoffs were all {waits:?}");
        assert!(
            waits
                .iter()
                .all(|w| *w >= Duration::from_secs(2) && *w <= Duration::from_secs(4))
        );
    }

    #[tokio::test]
    async fn retry_after_is_the_minimum_wait() {
        let clock = VirtualClock::new();
        let error = || unavailable().with_retry_after(Some(Duration::from_secs(7)));
        let (result, _) = run_failing(&RetryPolicy::default(), &clock, 1, error).await;
        assert_eq!(result.unwrap(), 1);
        assert_eq!(clock.sleeps(), vec![Duration::from_secs(7)]);
    }

    #[tokio::test]
    async fn stops_when_the_time_budget_is_spent() {
        let clock = VirtualClock::new();
        let policy = RetryPolicy::default()
            .with_max_attempts(100)
            .with_max_elapsed(Duration::from_secs(10));
        let (result, _) = run_failing(&policy, &clock, u32::MAX, unavailable).await;
        assert!(result.unwrap_err().is_exhausted());
        assert!(clock.total_slept() <= Duration::from_secs(10));
    }

    #[tokio::test]
    async fn throttling_is_waited_out_beyond_the_attempt_cap_within_its_budget() {
        let clock = VirtualClock::new();
        let (result, calls) =
            run_failing(&RetryPolicy::default(), &clock, 20, || throttled(30)).await;
        assert_eq!(result.unwrap(), 20);
        assert_eq!(calls, 21);
        assert_eq!(clock.total_slept(), Duration::from_secs(600));

        let clock = VirtualClock::new();
        let policy = RetryPolicy::default().with_throttle_budget(Duration::from_secs(60));
        let (result, calls) = run_failing(&policy, &clock, u32::MAX, || throttled(30)).await;
        assert!(result.unwrap_err().is_exhausted());
        assert_eq!(
            calls, 3,
            "two waits of 30 s fit a 60 s budget, a third does not"
        );
    }

    #[tokio::test]
    async fn an_exhausted_error_is_not_retried_again() {
        let clock = VirtualClock::new();
        let (result, calls) = run_failing(&RetryPolicy::default(), &clock, u32::MAX, || {
            unavailable().exhausted()
        })
        .await;
        assert!(result.unwrap_err().is_exhausted());
        assert_eq!(calls, 1);
        assert!(clock.sleeps().is_empty());
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried_once() {
        let clock = VirtualClock::new();
        let refused = || Error::new(ErrorKind::Transport, "refused").with_connect_failure();
        let (result, calls) = run_failing(&RetryPolicy::default(), &clock, u32::MAX, refused).await;
        assert!(result.unwrap_err().is_exhausted());
        assert_eq!(calls, 2);
        assert!(clock.total_slept() <= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn disabled_sends_once_and_permanent_errors_are_not_retried() {
        let clock = VirtualClock::new();
        let (_, calls) =
            run_failing(&RetryPolicy::disabled(), &clock, u32::MAX, || throttled(1)).await;
        assert_eq!(calls, 1);
        let (_, calls) = run_failing(&RetryPolicy::default(), &clock, u32::MAX, || {
            Error::config("bad")
        })
        .await;
        assert_eq!(calls, 1);
    }
}
