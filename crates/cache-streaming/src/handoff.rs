//! A bounded queue from one blocking thread to one async consumer that wakes the other
//! side in batches.
//!
//! A channel that wakes its receiver for every item costs a thread wakeup per chunk
//! whenever the consumer is faster than the reader (and one per chunk the other way round
//! when the reader is faster and waits for room). Here the waiting side is woken once
//! `batch` items are ready for it (or room for `batch` more), so a body costs
//! `chunks / batch` wakeups. Memory stays bounded by `capacity` items. Measured, a longer
//! queue woken in batches lost more to buffers falling out of the reader's core cache
//! than it saved in wakeups, so the reader uses a short queue with `batch` 1.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::write::lock;

struct State<T> {
    items: VecDeque<T>,
    /// The consumer's waker, while it waits for items.
    consumer: Option<Waker>,
    /// The producer waits for room.
    producer_waiting: bool,
    /// The producer is gone: no more items will come.
    producer_done: bool,
    /// The consumer is gone: items would never be taken.
    consumer_gone: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    room: Condvar,
    capacity: usize,
    batch: usize,
}

/// Creates a queue holding at most `capacity` items whose sides are woken once `batch`
/// items (or `batch` free places) are ready; `1 <= batch <= capacity`.
pub(crate) fn handoff<T>(capacity: usize, batch: usize) -> (Producer<T>, Consumer<T>) {
    let capacity = capacity.max(1);
    let batch = batch.clamp(1, capacity);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(capacity),
            consumer: None,
            producer_waiting: false,
            producer_done: false,
            consumer_gone: false,
        }),
        room: Condvar::new(),
        capacity,
        batch,
    });
    (
        Producer {
            shared: Arc::clone(&shared),
        },
        Consumer { shared },
    )
}

/// The blocking side.
pub(crate) struct Producer<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Producer<T> {
    /// Queues `item`, blocking the thread while the queue is full. `last` says no item
    /// follows, so a waiting consumer is woken now rather than at the next batch. Gives
    /// the item back when the consumer is gone.
    pub(crate) fn send(&self, item: T, last: bool) -> Result<(), T> {
        let shared = &*self.shared;
        let mut state = lock(&shared.state);
        while state.items.len() >= shared.capacity && !state.consumer_gone {
            state.producer_waiting = true;
            state = shared
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.consumer_gone {
            return Err(item);
        }
        state.items.push_back(item);
        let wake = if last || state.items.len() >= shared.batch {
            state.consumer.take()
        } else {
            None
        };
        drop(state);
        if let Some(waker) = wake {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.producer_done = true;
        let wake = state.consumer.take();
        drop(state);
        if let Some(waker) = wake {
            waker.wake();
        }
    }
}

/// The async side.
pub(crate) struct Consumer<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Consumer<T> {
    /// The next item; `None` once the producer is gone and every item was taken.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let shared = &*self.shared;
        let mut state = lock(&shared.state);
        if let Some(item) = state.items.pop_front() {
            let wake_producer =
                state.producer_waiting && state.items.len() + shared.batch <= shared.capacity;
            if wake_producer {
                state.producer_waiting = false;
            }
            drop(state);
            if wake_producer {
                shared.room.notify_one();
            }
            return Poll::Ready(Some(item));
        }
        if state.producer_done {
            return Poll::Ready(None);
        }
        match &mut state.consumer {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.consumer_gone = true;
        state.consumer = None;
        // Items still queued are dropped outside the lock.
        let items = std::mem::take(&mut state.items);
        drop(state);
        self.shared.room.notify_one();
        drop(items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_item_arrives_in_order_and_the_end_is_seen() {
        let (producer, mut consumer) = handoff::<u32>(8, 4);
        let reader = tokio::task::spawn_blocking(move || {
            for n in 0..1000 {
                producer.send(n, n == 999).map_err(|_| "consumer gone")?;
            }
            Ok::<_, &str>(())
        });
        let mut seen = Vec::new();
        while let Some(n) = std::future::poll_fn(|cx| consumer.poll_recv(cx)).await {
            seen.push(n);
        }
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        assert_eq!(reader.await.unwrap(), Ok(()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_producer_that_stops_short_of_a_batch_still_ends_the_stream() {
        let (producer, mut consumer) = handoff::<u32>(8, 4);
        let reader = tokio::task::spawn_blocking(move || {
            // Two items, neither marked last, then the producer is dropped.
            producer.send(1, false).unwrap();
            producer.send(2, false).unwrap();
        });
        let mut seen = Vec::new();
        while let Some(n) = std::future::poll_fn(|cx| consumer.poll_recv(cx)).await {
            seen.push(n);
        }
        assert_eq!(seen, vec![1, 2]);
        reader.await.unwrap();
    }

    #[test]
    fn a_dropped_consumer_releases_a_producer_blocked_on_a_full_queue() {
        let (producer, consumer) = handoff::<u32>(2, 1);
        producer.send(0, false).unwrap();
        producer.send(1, false).unwrap();
        // The queue is full: this send blocks until the consumer is dropped (or sees the
        // consumer gone at once), and gives its item back either way.
        let blocked = std::thread::spawn(move || producer.send(2, false));
        drop(consumer);
        assert_eq!(blocked.join().unwrap(), Err(2));
    }
}
