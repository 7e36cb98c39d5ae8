//! A task that sweeps a store every period.

use std::future::Future;
use std::time::Duration;

/// The shortest period a sweeper runs at; a shorter one (zero included) is taken as this.
pub const MIN_SWEEP_PERIOD: Duration = Duration::from_millis(10);

/// Runs a sweep every period on the current tokio runtime until it is dropped.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
///
/// use cache_kit::SweeperHandle;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let sweeps = Arc::new(AtomicU32::new(0));
/// let counted = Arc::clone(&sweeps);
/// let (done, finished) = tokio::sync::oneshot::channel();
/// let mut done = Some(done);
/// let sweeper = SweeperHandle::spawn(Duration::ZERO, move || {
///     if counted.fetch_add(1, Ordering::SeqCst) == 2 {
///         done.take().map(|done| done.send(()));
///     }
///     async {}
/// });
/// finished.await.unwrap();
/// drop(sweeper);
/// assert!(sweeps.load(Ordering::SeqCst) >= 3);
/// # });
/// ```
#[derive(Debug)]
pub struct SweeperHandle {
    task: tokio::task::JoinHandle<()>,
}

impl SweeperHandle {
    /// Calls `sweep` and awaits its future every `period` (at least
    /// [`MIN_SWEEP_PERIOD`]), the first time one period from now. What the sweep returns is
    /// dropped: a sweep that fails is tried again at the next tick, so it should count or
    /// report its own errors. Needs a tokio runtime with the time driver.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn<F, Fut>(period: Duration, mut sweep: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
    {
        // tokio's interval panics on a zero period, which would end the task silently.
        let period = period.max(MIN_SWEEP_PERIOD);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                sweep().await;
            }
        });
        Self { task }
    }

    /// Whether the sweeper's task still runs (it ends only if a sweep panicked).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for SweeperHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_zero_period_sweeps_every_minimum_period_and_dropping_stops_it() {
        let sweeps = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&sweeps);
        let sweeper = SweeperHandle::spawn(Duration::ZERO, move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        tokio::time::sleep(MIN_SWEEP_PERIOD * 3 + MIN_SWEEP_PERIOD / 2).await;
        assert!(sweeper.is_running());
        assert_eq!(sweeps.load(Ordering::SeqCst), 3);
        drop(sweeper);
        tokio::time::sleep(MIN_SWEEP_PERIOD * 5).await;
        assert_eq!(sweeps.load(Ordering::SeqCst), 3);
    }
}
