//! Load: `x-ms-dop-hint`, server time per page, and the service protection limits on execution
//! time and concurrency, answered with `429` and `Retry-After` as Dataverse does.

use super::prefer::MAX_PAGE_SIZE;
use super::reply::{ApiError, Reply};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Code of a refusal for the number of requests (played by [`Fault::Throttle`](super::Fault)).
pub(crate) const NUMBER_OF_REQUESTS: &str = "0x80072322";
const EXECUTION_TIME: &str = "0x80072321";
const CONCURRENCY: &str = "0x80072326";

/// A page of this many selected columns (the primary id included) costs the whole
/// [`set_server_time`](super::StandIn::set_server_time); fewer cost less, down to a quarter for
/// the primary id alone.
const FULL_COLUMNS: usize = 13;

/// Service protection limits for [`StandIn::set_limits`](super::StandIn::set_limits).
///
/// The default limits nothing. [`ServiceLimits::DATAVERSE`] holds the real service's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceLimits {
    /// The sliding window of the execution-time limit. Default: 300 seconds.
    pub window: Duration,
    /// The combined server time of the requests started within `window` that is allowed. A
    /// request that would push it over is refused with `429` and code `0x80072321`, its
    /// `Retry-After` saying when enough of the budget is free again; a request arriving while
    /// the window holds no server time at all is always let through. Default: `None` (no
    /// limit).
    pub execution_time: Option<Duration>,
    /// How many requests may execute at once (a request executes for its server time). One
    /// more is refused with `429` and code `0x80072326`, its `Retry-After` saying when the
    /// first of them ends. Default: `None` (no limit).
    pub concurrent_requests: Option<usize>,
}

impl ServiceLimits {
    /// Dataverse's limits per user: 1,200,000 ms of execution time in 300 seconds and 52
    /// concurrent requests.
    pub const DATAVERSE: ServiceLimits = ServiceLimits {
        window: Duration::from_secs(300),
        execution_time: Some(Duration::from_secs(1200)),
        concurrent_requests: Some(52),
    };
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            window: Duration::from_secs(300),
            execution_time: None,
            concurrent_requests: None,
        }
    }
}

/// How many Web API requests the stand-in refused with `429`, by error code; see
/// [`StandIn::throttled_requests`](super::StandIn::throttled_requests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThrottleCounts {
    /// `0x80072322` (number of requests), from [`Fault::Throttle`](super::Fault::Throttle).
    pub number_of_requests: usize,
    /// `0x80072321` (combined execution time).
    pub execution_time: usize,
    /// `0x80072326` (concurrent requests).
    pub concurrency: usize,
}

impl ThrottleCounts {
    /// All refusals together.
    pub fn total(&self) -> usize {
        self.number_of_requests + self.execution_time + self.concurrency
    }
}

/// A request let through: when it started, when its response is sent, its server time.
#[derive(Debug, Clone, Copy)]
struct Execution {
    start: Instant,
    end: Instant,
    cost: Duration,
}

/// A `429` about to be sent.
#[derive(Debug)]
pub(crate) struct Refusal {
    code: &'static str,
    message: String,
    retry_after: Duration,
}

impl Refusal {
    pub(crate) fn into_reply(self) -> Reply {
        let secs = self.retry_after.as_millis().div_ceil(1000).max(1);
        ApiError::new(429, self.code, self.message)
            .into_reply()
            .header("Retry-After", secs.to_string())
    }
}

/// The load side of the instance: settings, the requests in the window, the refusals.
#[derive(Debug, Default)]
pub(crate) struct Load {
    pub(crate) dop_hint: Option<u32>,
    pub(crate) full_page: Duration,
    pub(crate) limits: ServiceLimits,
    pub(crate) throttled: ThrottleCounts,
    /// Requests let through while a limit is set, oldest first.
    executions: VecDeque<Execution>,
}

impl Load {
    /// The server time of a page of `rows` rows and `columns` columns.
    pub(crate) fn page_cost(&self, rows: usize, columns: usize) -> Duration {
        let columns = columns.clamp(1, FULL_COLUMNS) - 1;
        let weight = 0.25 + 0.75 * columns as f64 / (FULL_COLUMNS - 1) as f64;
        self.full_page
            .mul_f64(rows.min(MAX_PAGE_SIZE) as f64 / MAX_PAGE_SIZE as f64 * weight)
    }

    /// Lets a request costing `cost` start at `now`, or refuses it (and counts the refusal).
    pub(crate) fn admit(&mut self, now: Instant, cost: Duration) -> Result<(), Refusal> {
        if self.limits.execution_time.is_none() && self.limits.concurrent_requests.is_none() {
            return Ok(());
        }
        self.forget_before(now);
        let refusal = self
            .concurrency_refusal(now)
            .or_else(|| self.execution_time_refusal(now, cost));
        match refusal {
            Some(refusal) => {
                match refusal.code {
                    CONCURRENCY => self.throttled.concurrency += 1,
                    _ => self.throttled.execution_time += 1,
                }
                Err(refusal)
            }
            None => {
                self.executions.push_back(Execution {
                    start: now,
                    end: now + cost,
                    cost,
                });
                Ok(())
            }
        }
    }

    /// Drops executions that neither run any more nor fall within the window.
    fn forget_before(&mut self, now: Instant) {
        while let Some(first) = self.executions.front() {
            if first.end > now || first.start + self.limits.window > now {
                break;
            }
            self.executions.pop_front();
        }
    }

    fn concurrency_refusal(&self, now: Instant) -> Option<Refusal> {
        let limit = self.limits.concurrent_requests?;
        let running = self.executions.iter().filter(|e| e.end > now);
        if running.clone().count() < limit {
            return None;
        }
        let first_end = running.map(|e| e.end).min()?;
        Some(Refusal {
            code: CONCURRENCY,
            message: format!("Number of concurrent requests exceeded the limit of {limit}."),
            retry_after: first_end - now,
        })
    }

    fn execution_time_refusal(&self, now: Instant, cost: Duration) -> Option<Refusal> {
        let budget = self.limits.execution_time?;
        let window = self.limits.window;
        let in_window: Vec<&Execution> = self
            .executions
            .iter()
            .filter(|e| e.start + window > now)
            .collect();
        let used: Duration = in_window.iter().map(|e| e.cost).sum();
        if used.is_zero() || used + cost <= budget {
            return None;
        }
        // The window frees its oldest requests first; wait until enough of them have left.
        let mut left = used;
        let free_at = in_window
            .iter()
            .find(|e| {
                left -= e.cost;
                left + cost <= budget
            })
            .or(in_window.last())
            .map(|e| e.start + window)?;
        Some(Refusal {
            code: EXECUTION_TIME,
            message: format!(
                "Combined execution time of incoming requests exceeded limit of {} milliseconds over time window of {} seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.",
                budget.as_millis(),
                window.as_secs()
            ),
            retry_after: free_at.saturating_duration_since(now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn load(limits: ServiceLimits) -> Load {
        Load {
            full_page: Duration::from_secs(1),
            limits,
            ..Load::default()
        }
    }

    #[test]
    fn page_cost_is_proportional_to_rows_and_columns() {
        let load = load(ServiceLimits::default());
        assert_eq!(load.page_cost(5000, 13), ms(1000));
        assert_eq!(load.page_cost(5000, 40), ms(1000));
        assert_eq!(load.page_cost(2500, 13), ms(500));
        assert_eq!(load.page_cost(5000, 1), ms(250));
        assert_eq!(load.page_cost(5000, 7), ms(625));
        assert_eq!(load.page_cost(0, 13), Duration::ZERO);
    }

    #[test]
    fn execution_time_refuses_what_would_exceed_the_budget_until_it_frees() {
        let mut load = load(ServiceLimits {
            window: Duration::from_secs(10),
            execution_time: Some(ms(2500)),
            concurrent_requests: None,
        });
        let t0 = Instant::now();
        load.admit(t0, ms(1000)).unwrap();
        load.admit(t0 + ms(100), ms(1000)).unwrap();
        let refused = load.admit(t0 + ms(2000), ms(1000)).unwrap_err();
        assert_eq!(refused.code, EXECUTION_TIME);
        // The first request leaves the window at t0 + 10 s: 8 s from now.
        assert_eq!(refused.retry_after, ms(8000));
        // A smaller request still fits.
        load.admit(t0 + ms(2000), ms(500)).unwrap();
        load.admit(t0 + ms(10_000), ms(1000)).unwrap();
        assert_eq!(load.throttled.execution_time, 1);
    }

    #[test]
    fn concurrency_counts_requests_still_executing() {
        let mut load = load(ServiceLimits {
            concurrent_requests: Some(2),
            ..ServiceLimits::default()
        });
        let t0 = Instant::now();
        load.admit(t0, ms(1000)).unwrap();
        load.admit(t0, ms(3000)).unwrap();
        let refused = load.admit(t0 + ms(200), ms(1000)).unwrap_err();
        assert_eq!(refused.code, CONCURRENCY);
        assert_eq!(refused.retry_after, ms(800));
        assert_eq!(
            refused.into_reply().headers[0],
            ("Retry-After".to_owned(), "1".to_owned())
        );
        load.admit(t0 + ms(1000), ms(1000)).unwrap();
        assert_eq!(load.throttled.concurrency, 1);
    }

    #[test]
    fn no_limits_admit_everything() {
        let mut load = load(ServiceLimits::default());
        let t0 = Instant::now();
        for _ in 0..100 {
            load.admit(t0, ms(5000)).unwrap();
        }
        assert!(load.executions.is_empty());
    }
}
