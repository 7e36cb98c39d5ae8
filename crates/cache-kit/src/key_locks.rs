//! Striped locks that serialize the operations on one key.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Mutex, MutexGuard};

use crate::sync::lock;

/// A fixed set of mutexes, one chosen per key by the key's hash, so the operations on one
/// key run one at a time while different keys mostly run in parallel.
///
/// Each stripe may carry state of its own (`T`), guarded with it: a backend that needs a
/// per-key record while the key is locked (a write-order slot, say) keeps it there. The
/// locks are synchronous: take them on the blocking pool, never across an `.await`.
///
/// Locking two keys at once can deadlock (they may share a stripe, or two threads may
/// take them in opposite orders); lock one key at a time, or every stripe with
/// [`lock_all`](Self::lock_all).
///
/// ```
/// use cache_kit::KeyLocks;
///
/// let locks: KeyLocks<u32> = KeyLocks::with_state(8, |_| 0);
/// *locks.lock("some key") += 1;
/// assert_eq!(*locks.lock("some key"), 1);
/// let all = locks.lock_all();
/// assert_eq!(all.iter().map(|stripe| **stripe).sum::<u32>(), 1);
/// ```
#[derive(Debug)]
pub struct KeyLocks<T = ()> {
    stripes: Box<[Mutex<T>]>,
}

/// Every stripe of a [`KeyLocks`], locked in stripe order; unlocks them when dropped.
#[derive(Debug)]
pub struct AllKeysGuard<'a, T> {
    guards: Vec<MutexGuard<'a, T>>,
}

impl KeyLocks<()> {
    /// `stripes` locks that guard nothing but order (at least one).
    pub fn new(stripes: usize) -> Self {
        Self::with_state(stripes, |_| ())
    }
}

impl<T> KeyLocks<T> {
    /// `stripes` locks (at least one), the state of stripe `i` made by `state(i)`.
    pub fn with_state(stripes: usize, state: impl FnMut(usize) -> T) -> Self {
        Self {
            stripes: (0..stripes.max(1)).map(state).map(Mutex::new).collect(),
        }
    }

    /// How many stripes there are.
    pub fn stripes(&self) -> usize {
        self.stripes.len()
    }

    /// The stripe `key` maps to (the same for the same bytes, in every process).
    pub fn stripe_of(&self, key: impl AsRef<[u8]>) -> usize {
        // SipHash with fixed keys: stable across runs, and cheap next to the I/O it guards.
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key.as_ref());
        (hash % self.stripes.len() as u64) as usize
    }

    /// Locks `key`'s stripe, waiting for it.
    pub fn lock(&self, key: impl AsRef<[u8]>) -> MutexGuard<'_, T> {
        lock(&self.stripes[self.stripe_of(key)])
    }

    /// Locks stripe `index` (`index` below [`stripes`](Self::stripes)).
    ///
    /// # Panics
    ///
    /// When `index` is out of range.
    pub fn lock_stripe(&self, index: usize) -> MutexGuard<'_, T> {
        lock(&self.stripes[index])
    }

    /// Locks every stripe, in stripe order (so two callers cannot deadlock each other), for
    /// an operation no single-key operation may overlap.
    pub fn lock_all(&self) -> AllKeysGuard<'_, T> {
        AllKeysGuard {
            guards: self.stripes.iter().map(lock).collect(),
        }
    }
}

impl<'a, T> AllKeysGuard<'a, T> {
    /// The stripes' states, in stripe order.
    pub fn iter(&self) -> impl Iterator<Item = &MutexGuard<'a, T>> {
        self.guards.iter()
    }

    /// The stripes' states, in stripe order, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut MutexGuard<'a, T>> {
        self.guards.iter_mut()
    }

    /// The state of stripe `index`.
    ///
    /// # Panics
    ///
    /// When `index` is out of range.
    pub fn stripe_mut(&mut self, index: usize) -> &mut T {
        &mut self.guards[index]
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn one_key_is_held_by_one_thread_at_a_time() {
        let locks = Arc::new(KeyLocks::new(4));
        let inside = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (locks, inside) = (Arc::clone(&locks), Arc::clone(&inside));
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        let _key = locks.lock("k");
                        assert!(!inside.swap(true, Ordering::SeqCst));
                        inside.store(false, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    }

    #[test]
    fn stripes_are_stable_and_in_range() {
        let locks = KeyLocks::new(64);
        assert_eq!(locks.stripe_of("key"), locks.stripe_of(b"key"));
        assert!((0..1000).all(|n| locks.stripe_of(format!("k{n}")) < 64));
        let zero = KeyLocks::new(0);
        assert_eq!(zero.stripes(), 1);
        assert_eq!(zero.stripe_of("any"), 0);
    }

    #[test]
    fn lock_all_holds_every_stripe() {
        let locks = KeyLocks::with_state(3, |index| index);
        let mut all = locks.lock_all();
        assert_eq!(
            all.iter().map(|state| **state).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        *all.stripe_mut(1) = 7;
        drop(all);
        assert_eq!(*locks.lock_stripe(1), 7);
    }
}
