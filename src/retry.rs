//! Retry policy: exponential backoff with jitter, `Retry-After` as the minimum wait, caps on
//! attempts and total time, and an injectable clock so tests never really wait.

use crate::error::{Error, Result};
use futures::future::BoxFuture;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The time source and sleeper the retry policy uses.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
    /// Waits for `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// The real clock: [`Instant::now`] and `tokio::time::sleep`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock whose sleeps return at once and only move its own time forward; it records every
/// wait. For tests of code that retries.
#[derive(Debug)]
pub struct VirtualClock {
    start: Instant,
    slept: Mutex<Vec<Duration>>,
}

impl VirtualClock {
    /// A clock at the current instant that has not slept yet.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            slept: Mutex::new(Vec::new()),
        }
    }

    /// Every wait requested so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.slept.lock().expect("clock lock").clone()
    }

    /// The sum of every wait requested so far.
    pub fn total_slept(&self) -> Duration {
        self.sleeps().iter().sum()
    }
}

impl Default for VirtualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        self.start + self.total_slept()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.slept.lock().expect("clock lock").push(duration);
        Box::pin(std::future::ready(()))
    }
}

/// How failed requests are retried.
///
/// Only errors whose [`Error::is_retryable`] is true are retried (HTTP 429, 502, 503, 504,
/// timeouts, connection failures). The wait before attempt `n + 1` is an exponential backoff
/// (`initial_backoff * 2^(n-1)`, at most `max_backoff`) with random jitter, and never shorter than
/// the server's `Retry-After`.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    max_elapsed: Duration,
    clock: Arc<dyn Clock>,
}

impl Default for RetryPolicy {
    /// 5 attempts, 1 s initial backoff, 60 s maximum backoff, 5 minutes in all, the system clock.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(300),
            clock: Arc::new(SystemClock),
        }
    }
}

impl RetryPolicy {
    /// A policy that sends each request once and never retries.
    pub fn disabled() -> Self {
        Self::default().with_max_attempts(1)
    }

    /// Sets how many times a request is sent at most, the first included (at least 1).
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

    /// Sets the total time after which no further attempt starts.
    pub fn with_max_elapsed(mut self, elapsed: Duration) -> Self {
        self.max_elapsed = elapsed;
        self
    }

    /// Replaces the clock (use [`VirtualClock`] in tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The most attempts a request gets.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Runs `operation` until it succeeds, fails for good, or the policy gives up.
    pub(crate) async fn run<T, F, Fut>(&self, mut operation: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let start = self.clock.now();
        let mut attempt = 1;
        loop {
            let error = match operation().await {
                Ok(value) => return Ok(value),
                Err(error) if !error.is_retryable() => return Err(error),
                Err(error) => error,
            };
            if attempt >= self.max_attempts {
                return Err(error.gave_up(attempt));
            }
            let wait = self
                .backoff(attempt)
                .max(error.retry_after().unwrap_or_default());
            let elapsed = self.clock.now().saturating_duration_since(start);
            if elapsed + wait > self.max_elapsed {
                return Err(error.gave_up(attempt));
            }
            self.clock.sleep(wait).await;
            attempt += 1;
        }
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

/// A random number in `[0, 1)` from the standard library's randomly seeded hasher.
fn random_fraction() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

impl Error {
    /// Notes in the message that the retry policy gave up after `attempts` attempts.
    fn gave_up(self, attempts: u32) -> Self {
        if attempts > 1 {
            self.with_context(format!("gave up after {attempts} attempts"))
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn unavailable() -> Error {
        Error::new(ErrorKind::Service, "unavailable")
            .with_status(503)
            .with_retryable(true)
    }

    #[tokio::test]
    async fn backs_off_exponentially_within_bounds() {
        let clock = Arc::new(VirtualClock::new());
        let policy = RetryPolicy::default()
            .with_max_attempts(4)
            .with_clock(clock.clone());
        let calls = AtomicU32::new(0);
        let result: Result<()> = policy
            .run(|| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(unavailable()) }
            })
            .await;
        let error = result.unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert!(
            error.to_string().contains("gave up after 4 attempts"),
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
        let clock = Arc::new(VirtualClock::new());
        let policy = RetryPolicy::default().with_clock(clock.clone());
        let calls = AtomicU32::new(0);
        let value = policy
            .run(|| {
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        Err(Error::new(ErrorKind::Throttled, "throttled")
                            .with_retry_after(Some(Duration::from_secs(7))))
                    } else {
                        Ok(42)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(value, 42);
        assert_eq!(clock.sleeps(), vec![Duration::from_secs(7)]);
    }

    #[tokio::test]
    async fn stops_when_the_time_budget_is_spent() {
        let clock = Arc::new(VirtualClock::new());
        let policy = RetryPolicy::default()
            .with_max_attempts(100)
            .with_max_elapsed(Duration::from_secs(10))
            .with_clock(clock.clone());
        let result: Result<()> = policy.run(|| async { Err(unavailable()) }).await;
        assert!(result.is_err());
        assert!(clock.total_slept() <= Duration::from_secs(10));
    }

    #[tokio::test]
    async fn disabled_sends_once_and_permanent_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let _ = RetryPolicy::disabled()
            .run(|| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(unavailable()) }
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let _ = RetryPolicy::default()
            .run(|| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(Error::config("bad")) }
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
