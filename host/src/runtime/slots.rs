//! Instance slots shared fairly between tenants: work-conserving fair queueing.
//!
//! The engine runs at most `capacity` instances at once. A tenant alone may take every
//! slot; a burst beyond them waits rather than fails. When a slot frees and several tenants
//! wait, it goes to the waiting tenant holding the fewest slots (the oldest waiter breaks a
//! tie), so a tenant saturating the pool (a slow upstream holds each slot for seconds) gets
//! its share and no more while others wait: their invocations start at the next release,
//! not behind the whole backlog. Within a tenant, waiters are served in order.
//!
//! A waiter gives up after a bound (then the invocation is refused as busy, and the API
//! answers 429 with `Retry-After`); a waiter that goes away (its request was cut) is skipped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Who an invocation runs for: the unit of fairness (a tenant's id; local runs share one).
pub type SlotOwner = Arc<str>;

/// Why no slot was had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error(
        "every connector instance was busy for {0:?}: too many invocations of this tenant are queued; retry later"
    )]
    Busy(Duration),
    #[error("the runtime is shutting down")]
    Closed,
}

#[derive(Debug)]
struct Waiter {
    /// Order of arrival, across tenants.
    seq: u64,
    grant: oneshot::Sender<()>,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    /// Slots held per owner (owners holding none are absent).
    running: HashMap<SlotOwner, usize>,
    /// Waiters per owner, oldest first (owners with none are absent).
    waiting: HashMap<SlotOwner, VecDeque<Waiter>>,
    next_seq: u64,
}

impl State {
    /// The owner the next free slot goes to: of the owners waiting, the one holding the
    /// fewest slots; the oldest head waiter breaks a tie.
    fn next_owner(&self) -> Option<SlotOwner> {
        self.waiting
            .iter()
            .filter_map(|(owner, queue)| queue.front().map(|w| (owner, w.seq)))
            .min_by_key(|(owner, seq)| (self.running.get(*owner).copied().unwrap_or(0), *seq))
            .map(|(owner, _)| owner.clone())
    }

    fn take(&mut self, owner: &SlotOwner) {
        *self.running.entry(owner.clone()).or_default() += 1;
    }

    fn give_back(&mut self, owner: &SlotOwner) {
        if let Some(n) = self.running.get_mut(owner) {
            *n -= 1;
            if *n == 0 {
                self.running.remove(owner);
            }
        }
    }

    /// Hands a free slot to the next live waiter, or keeps it free.
    fn hand_over(&mut self) {
        while let Some(owner) = self.next_owner() {
            let Some(queue) = self.waiting.get_mut(&owner) else {
                break;
            };
            let waiter = queue.pop_front();
            if queue.is_empty() {
                self.waiting.remove(&owner);
            }
            if let Some(waiter) = waiter {
                self.take(&owner);
                if waiter.grant.send(()).is_ok() {
                    return;
                }
                // The waiter went away: the slot goes to the next one.
                self.give_back(&owner);
            }
        }
        self.free += 1;
    }
}

/// The slots of one engine.
#[derive(Debug)]
pub struct FairSlots {
    capacity: usize,
    state: Mutex<State>,
}

/// A waiter's place in the queue while it waits. Settled when the wait ends; a waiter that
/// goes away unsettled (its request was cut while it waited) leaves the queue, and a slot
/// handed to it in the meantime is given back, never lost.
struct Waiting<'a> {
    slots: &'a Arc<FairSlots>,
    owner: &'a SlotOwner,
    seq: u64,
    granted: oneshot::Receiver<()>,
    settled: bool,
}

impl Waiting<'_> {
    /// Ends the wait: the waiter leaves the queue, or, when a slot was handed to it
    /// meanwhile (under the lock, so the lock tells for sure), it has that slot.
    fn settle(&mut self) -> Option<Slot> {
        self.settled = true;
        {
            let mut state = self.slots.state.lock().ok()?;
            let queued = state.waiting.get_mut(self.owner).and_then(|queue| {
                let at = queue.iter().position(|w| w.seq == self.seq)?;
                queue.remove(at);
                Some(queue.is_empty())
            });
            if let Some(emptied) = queued {
                if emptied {
                    state.waiting.remove(self.owner);
                }
                return None;
            }
        }
        self.granted.close();
        self.granted
            .try_recv()
            .ok()
            .map(|()| self.slots.slot(self.owner))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.settled {
            // A slot handed over meanwhile is dropped here, which gives it back.
            drop(self.settle());
        }
    }
}

/// A slot held; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<FairSlots>,
    owner: SlotOwner,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut state) = self.slots.state.lock() {
            state.give_back(&self.owner);
            state.hand_over();
        }
    }
}

impl FairSlots {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            state: Mutex::new(State {
                free: capacity.max(1),
                ..State::default()
            }),
        })
    }

    /// Slots held now.
    pub fn in_use(&self) -> usize {
        self.state
            .lock()
            .map(|s| self.capacity - s.free)
            .unwrap_or(self.capacity)
    }

    /// Invocations waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.state
            .lock()
            .map(|s| s.waiting.values().map(VecDeque::len).sum())
            .unwrap_or(0)
    }

    /// A slot for `owner`: at once when one is free, else after waiting its turn, at most
    /// `max_wait`.
    pub async fn acquire(
        self: &Arc<Self>,
        owner: &SlotOwner,
        max_wait: Duration,
    ) -> Result<Slot, SlotError> {
        let (seq, granted) = {
            let mut state = self.state.lock().map_err(|_| SlotError::Closed)?;
            // Free slots exist only while nobody waits: a release hands its slot over.
            if state.free > 0 {
                state.free -= 1;
                state.take(owner);
                return Ok(self.slot(owner));
            }
            let (grant, granted) = oneshot::channel();
            let seq = state.next_seq;
            state.next_seq += 1;
            state
                .waiting
                .entry(owner.clone())
                .or_default()
                .push_back(Waiter { seq, grant });
            (seq, granted)
        };
        let mut waiting = Waiting {
            slots: self,
            owner,
            seq,
            granted,
            settled: false,
        };
        match tokio::time::timeout(max_wait, &mut waiting.granted).await {
            Ok(Ok(())) => {
                waiting.settled = true;
                Ok(self.slot(owner))
            }
            Ok(Err(_)) => {
                waiting.settled = true;
                Err(SlotError::Closed)
            }
            Err(_) => waiting.settle().ok_or(SlotError::Busy(max_wait)),
        }
    }

    fn slot(self: &Arc<Self>, owner: &SlotOwner) -> Slot {
        Slot {
            slots: self.clone(),
            owner: owner.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(name: &str) -> SlotOwner {
        Arc::from(name)
    }

    const LONG: Duration = Duration::from_secs(60);

    /// Starts a waiter for `who` and lets it queue.
    async fn queued(
        slots: &Arc<FairSlots>,
        who: &str,
    ) -> tokio::task::JoinHandle<Result<Slot, SlotError>> {
        let slots = slots.clone();
        let who = owner(who);
        let handle = tokio::spawn(async move { slots.acquire(&who, LONG).await });
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        handle
    }

    #[tokio::test]
    async fn a_tenant_alone_takes_every_slot() {
        let slots = FairSlots::new(3);
        let a = owner("a");
        let held: Vec<Slot> = futures_join(&slots, &a, 3).await;
        assert_eq!(slots.in_use(), 3);
        drop(held);
        assert_eq!(slots.in_use(), 0);
    }

    async fn futures_join(slots: &Arc<FairSlots>, who: &SlotOwner, n: usize) -> Vec<Slot> {
        let mut held = Vec::new();
        for _ in 0..n {
            held.push(slots.acquire(who, LONG).await.expect("a free slot"));
        }
        held
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_waiting_tenant_holding_the_fewest() {
        let slots = FairSlots::new(2);
        let a = owner("a");
        let mut held = futures_join(&slots, &a, 2).await;
        // a queues a backlog first, then b asks once.
        let a_waiting = [queued(&slots, "a").await, queued(&slots, "a").await];
        let b_waiting = queued(&slots, "b").await;
        assert_eq!(slots.waiting(), 3);
        // The first slot a releases goes to b, although a's waiters came first.
        drop(held.pop());
        let b_slot = b_waiting.await.expect("joined").expect("b's turn");
        assert!(!a_waiting[0].is_finished());
        // The next goes to a's oldest waiter.
        drop(held.pop());
        let a_slot = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if a_waiting[0].is_finished() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        assert!(a_slot.is_ok());
        assert!(
            !a_waiting[1].is_finished(),
            "a's waiters are served in order"
        );
        drop(b_slot);
        for w in a_waiting {
            drop(w.await.expect("joined").expect("a slot"));
        }
        assert_eq!(slots.in_use(), 0);
        assert_eq!(slots.waiting(), 0);
    }

    #[tokio::test]
    async fn a_wait_beyond_the_bound_is_refused_and_leaves_no_trace() {
        let slots = FairSlots::new(1);
        let a = owner("a");
        let held = slots.acquire(&a, LONG).await.expect("free");
        let refused = slots.acquire(&a, Duration::from_millis(20)).await;
        assert_eq!(
            refused.map(|_| ()),
            Err(SlotError::Busy(Duration::from_millis(20)))
        );
        assert_eq!(slots.waiting(), 0);
        drop(held);
        assert_eq!(
            slots.in_use(),
            0,
            "the slot was not handed to the refused waiter"
        );
    }

    #[tokio::test]
    async fn a_slot_handed_to_a_waiter_that_goes_away_before_taking_it_is_given_back() {
        let slots = FairSlots::new(1);
        let held = slots.acquire(&owner("a"), LONG).await.expect("free");
        let b = owner("b");
        let mut waiting = Box::pin(slots.acquire(&b, LONG));
        tokio::select! {
            _ = &mut waiting => panic!("no slot is free"),
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
        assert_eq!(slots.waiting(), 1);
        // The release hands the slot to b, whose request is cut before it takes it.
        drop(held);
        drop(waiting);
        assert_eq!(slots.in_use(), 0, "the slot was lost");
        assert_eq!(slots.waiting(), 0);
        drop(
            slots
                .acquire(&owner("c"), Duration::from_millis(10))
                .await
                .expect("free again"),
        );
    }

    #[tokio::test]
    async fn a_waiter_that_went_away_is_skipped() {
        let slots = FairSlots::new(1);
        let held = slots.acquire(&owner("a"), LONG).await.expect("free");
        let gone = queued(&slots, "b").await;
        gone.abort();
        let _ = gone.await;
        let next = queued(&slots, "c").await;
        drop(held);
        drop(next.await.expect("joined").expect("c's turn"));
        assert_eq!(slots.in_use(), 0);
    }
}
