//! The time push decides by (a token's expiry, when a message is due, its lease and backoff):
//! the wall clock plus an offset a test can move forward, so no test sleeps for a token to die
//! or a retry to come due. Production never moves it.
//!
//! Not `tokio::time::pause()`: the relay's tests talk to it over real sockets and wait on the
//! SQLite thread, and a paused runtime with nothing to do jumps to its next timer (a test's
//! deadline among them), so paused time would fire deadlines that real work has not missed.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Cheap to clone; clones share the offset.
#[derive(Clone, Default)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    offset_ms: AtomicI64,
    advanced: Notify,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock").field("offset_ms", &self.inner.offset_ms.load(Ordering::Relaxed)).finish()
    }
}

impl Clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis() + self.inner.offset_ms.load(Ordering::Relaxed)
    }

    /// Moves this clock (and every clone) forward by `by`; whoever waits on it looks again.
    pub fn advance(&self, by: Duration) {
        self.inner.offset_ms.fetch_add(by.as_millis() as i64, Ordering::Relaxed);
        self.inner.advanced.notify_waiters();
    }

    /// Waits until [`Clock::now_ms`] reaches `at_ms`, by real time or by [`Clock::advance`].
    pub async fn sleep_until_ms(&self, at_ms: i64) {
        loop {
            // Registered before reading the time, so an advance in between is not missed.
            let advanced = self.inner.advanced.notified();
            tokio::pin!(advanced);
            advanced.as_mut().enable();
            let left = at_ms - self.now_ms();
            if left <= 0 {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(left as u64)) => {}
                _ = advanced => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_advance_ends_a_wait_that_real_time_would_not() {
        let clock = Clock::default();
        let at = clock.now_ms() + 3_600_000;
        let waiting = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until_ms(at).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        clock.advance(Duration::from_secs(3600));
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken by the advance").unwrap();
    }
}
