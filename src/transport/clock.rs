//! The time source and sleeper of the transport, injectable so tests never really wait (with
//! the testkit's `VirtualClock`).

use futures::future::BoxFuture;
use std::fmt;
use std::time::{Duration, Instant};

/// The time source and sleeper that retries, throttling pauses and token expiry use.
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

#[cfg(any(test, feature = "testkit"))]
pub use virtual_clock::VirtualClock;

/// The clock of tests, compiled for the crate's own unit tests and the `testkit` feature.
#[cfg(any(test, feature = "testkit"))]
mod virtual_clock {
    use super::Clock;
    use futures::future::BoxFuture;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// A clock whose sleeps return at once and only move its own time forward; it records every
    /// wait. For tests of code that retries: give it to
    /// [`ClientOptions::with_clock`](crate::ClientOptions::with_clock).
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
}
