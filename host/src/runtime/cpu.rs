//! The CPU time of an invocation, as its limit counts it: the time its future spends being
//! polled (guest code runs only inside a poll), minus the time host calls that wait (an
//! outbound request) spend inside polls of their own. Time parked is never charged: waiting
//! for an instance slot (before the invocation's future exists), for the executor after
//! the guest yields, or for I/O. Host calls that return at once (`connection.field`,
//! `log`) are charged to the guest; they take microseconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// `poll_start` when no poll runs.
const IDLE: u64 = u64::MAX;

/// One invocation's clock. Updated by the polls of its future, read by the epoch callback
/// (which runs inside such a poll).
#[derive(Debug)]
pub(crate) struct CpuClock {
    base: Instant,
    /// Nanoseconds spent in finished polls of the invocation's future.
    polled: AtomicU64,
    /// When the running poll started (nanoseconds after `base`), or [`IDLE`].
    poll_start: AtomicU64,
    /// Nanoseconds spent in polls of waiting host calls, inside those polls.
    host: AtomicU64,
}

impl Default for CpuClock {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            polled: AtomicU64::new(0),
            poll_start: AtomicU64::new(IDLE),
            host: AtomicU64::new(0),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl CpuClock {
    fn now(&self) -> u64 {
        nanos(self.base.elapsed())
    }

    /// The guest's CPU time so far.
    pub(crate) fn guest_time(&self) -> Duration {
        let start = self.poll_start.load(Ordering::Relaxed);
        let running = if start == IDLE {
            0
        } else {
            self.now().saturating_sub(start)
        };
        let polled = self.polled.load(Ordering::Relaxed) + running;
        Duration::from_nanos(polled.saturating_sub(self.host.load(Ordering::Relaxed)))
    }
}

/// What a [`Timed`] future's polls count as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charge {
    /// The invocation's own future: its polls are the guest's time (less the host's).
    Guest,
    /// A host call that waits: its polls are the host's time.
    Host,
}

/// A future whose polls are timed on an invocation's [`CpuClock`].
pub(crate) struct Timed<'c, F> {
    inner: Pin<Box<F>>,
    clock: &'c CpuClock,
    charge: Charge,
}

impl<'c, F> Timed<'c, F> {
    /// The invocation's future: only the time it is polled counts against the CPU limit.
    pub(crate) fn guest(inner: F, clock: &'c CpuClock) -> Self {
        Self {
            inner: Box::pin(inner),
            clock,
            charge: Charge::Guest,
        }
    }

    /// A host call that waits: the time it is polled is not charged to the guest.
    pub(crate) fn host(inner: F, clock: &'c CpuClock) -> Self {
        Self {
            charge: Charge::Host,
            ..Self::guest(inner, clock)
        }
    }
}

impl<F: Future> Future for Timed<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let clock = self.clock;
        let start = clock.now();
        if self.charge == Charge::Guest {
            clock.poll_start.store(start, Ordering::Relaxed);
        }
        let outcome = self.inner.as_mut().poll(cx);
        let spent = clock.now().saturating_sub(start);
        match self.charge {
            Charge::Guest => {
                clock.poll_start.store(IDLE, Ordering::Relaxed);
                clock.polled.fetch_add(spent, Ordering::Relaxed);
            }
            Charge::Host => {
                clock.host.fetch_add(spent, Ordering::Relaxed);
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(d: Duration) {
        let start = Instant::now();
        while start.elapsed() < d {
            std::hint::spin_loop();
        }
    }

    #[tokio::test]
    async fn only_time_inside_polls_and_outside_waiting_host_calls_is_charged() {
        let clock = CpuClock::default();
        Timed::guest(
            async {
                spin(Duration::from_millis(20));
                // Parked: not charged.
                tokio::time::sleep(Duration::from_millis(1000)).await;
                // A host call that works and waits: neither is charged.
                Timed::host(
                    async {
                        spin(Duration::from_millis(20));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    },
                    &clock,
                )
                .await;
                spin(Duration::from_millis(20));
            },
            &clock,
        )
        .await;
        let charged = clock.guest_time();
        assert!(charged >= Duration::from_millis(40), "{charged:?}");
        // Far below the 1.1 s parked or waiting in the host call.
        assert!(charged < Duration::from_millis(500), "{charged:?}");
    }
}
