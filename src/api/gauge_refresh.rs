//! How often a scrape refreshes the gauges that come from a router snapshot (connections, IPAM).
//! A snapshot asks every actor for its state; a scrape storm (many Prometheus servers, a
//! dashboard on a short interval, a loop of curl) must not turn into as many rounds of actor
//! queries. Gauges older than [`GAUGE_MAX_AGE`] are refreshed by one scrape, and scrapes that
//! arrive while it runs wait for it instead of starting their own.

use std::time::{Duration, Instant};

/// How long snapshot-derived gauges are served as they are: 1 s, well under Prometheus' shortest
/// usual scrape interval (10-15 s), so a single scraper always sees fresh values, while a storm
/// costs at most one snapshot a second.
pub const GAUGE_MAX_AGE: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct GaugeRefresh {
    /// When the gauges were last refreshed; the lock also makes concurrent scrapes wait for the
    /// refresh under way.
    refreshed_at: tokio::sync::Mutex<Option<Instant>>,
}

impl GaugeRefresh {
    /// Runs `refresh` unless the gauges were refreshed less than [`GAUGE_MAX_AGE`] before `now`.
    /// `refresh` says whether it worked: a failed one (the router not ready yet) is retried by
    /// the next scrape.
    pub async fn refresh_if_stale<F, Fut>(&self, now: Instant, refresh: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = bool>,
    {
        let mut refreshed_at = self.refreshed_at.lock().await;
        if refreshed_at.is_some_and(|at| now.saturating_duration_since(at) < GAUGE_MAX_AGE) {
            return;
        }
        if refresh().await {
            *refreshed_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn one_refresh_per_max_age_and_failures_are_retried() {
        let gate = GaugeRefresh::default();
        let calls = AtomicUsize::new(0);
        let refresh = |works: bool| {
            let calls = &calls;
            move || async move {
                calls.fetch_add(1, Ordering::Relaxed);
                works
            }
        };
        let t0 = Instant::now();
        gate.refresh_if_stale(t0, refresh(false)).await;
        gate.refresh_if_stale(t0, refresh(true)).await;
        assert_eq!(
            calls.load(Ordering::Relaxed),
            2,
            "a failed refresh is retried"
        );
        for ms in [0, 10, 999] {
            let at = t0 + Duration::from_millis(ms);
            gate.refresh_if_stale(at, refresh(true)).await;
        }
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        gate.refresh_if_stale(t0 + GAUGE_MAX_AGE, refresh(true))
            .await;
        assert_eq!(calls.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn concurrent_scrapes_wait_for_the_refresh_under_way() {
        let gate = GaugeRefresh::default();
        let calls = AtomicUsize::new(0);
        let now = Instant::now();
        let scrape = || {
            gate.refresh_if_stale(now, || async {
                calls.fetch_add(1, Ordering::Relaxed);
                // Let the other scrapes run while this refresh is under way.
                tokio::task::yield_now().await;
                true
            })
        };
        futures_util::join!(scrape(), scrape(), scrape(), scrape());
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }
}
