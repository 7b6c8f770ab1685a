//! Who waits for which key on a shard's leader, in the order they began waiting.
//!
//! `apply` calls [`Waiters::written`] with the keys of every entry once its slot locks are
//! released. For each written key that now holds the type its waiters want, the first idle
//! waiter of that key (FIFO, as Redis serves the client blocked first) is woken, and only it:
//! it proposes its pop; when that pop applies, the key's next waiter is woken if the key is
//! still non-empty. So waiters of one key propose one after another, in blocking order, and a
//! push of one element wakes one client. A waiter whose pop found nothing (another client
//! emptied the key first) becomes idle again and keeps its place.
//!
//! Nothing here is replicated or read by `apply`: only the leader's waiting clients are.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::Kind;
use crate::store::value::Value;
use crate::store::{now_ms, Keyspace, UnixMillis};

pub struct Waiters {
    keyspace: Arc<Keyspace>,
    /// Registered waiters: `written` returns at once while it is 0 (every follower, and a
    /// leader nobody waits on).
    count: AtomicUsize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    /// For each key, its waiters in the order they registered.
    queues: HashMap<Bytes, VecDeque<u64>>,
    waiting: HashMap<u64, Waiting>,
}

struct Waiting {
    keys: Vec<Bytes>,
    kind: Kind,
    state: State,
    wake: Arc<Notify>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Waiting for a key to become ready.
    Idle,
    /// Woken, about to propose its pop: its keys' next waiters wait for that pop to apply.
    Woken,
    /// Its pop is proposed.
    Popping,
}

impl Waiters {
    pub fn new(keyspace: Arc<Keyspace>) -> Waiters {
        Waiters {
            keyspace,
            count: AtomicUsize::new(0),
            inner: Mutex::default(),
        }
    }

    /// Registers a client waiting on `keys` for a value of `kind`, behind everyone already
    /// waiting on them. It stays registered until the [`Registration`] is dropped.
    pub fn register(self: &Arc<Self>, keys: &[Bytes], kind: Kind) -> Registration {
        let wake = Arc::new(Notify::new());
        let mut inner = self.inner.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        let mut unique: Vec<Bytes> = Vec::with_capacity(keys.len());
        for key in keys {
            if !unique.contains(key) {
                unique.push(key.clone());
                inner.queues.entry(key.clone()).or_default().push_back(id);
            }
        }
        inner.waiting.insert(
            id,
            Waiting {
                keys: unique,
                kind,
                state: State::Idle,
                wake: wake.clone(),
            },
        );
        self.count.fetch_add(1, Ordering::Relaxed);
        Registration {
            waiters: self.clone(),
            id,
            wake,
        }
    }

    /// Waiting clients on this replica.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An entry touching `keys` has been applied (its locks released): wakes the next waiter
    /// of each key that now holds what it waits for.
    pub fn written(&self, keys: &[&[u8]], now: UnixMillis) {
        if self.is_empty() {
            return;
        }
        let mut inner = self.inner.lock();
        for key in keys {
            self.wake_next(&mut inner, key, now);
        }
    }

    /// What `key` holds, as far as waiters care.
    fn kind_at(&self, key: &[u8], now: UnixMillis) -> Option<Kind> {
        let slots = self.keyspace.read_slots([key]);
        match slots.get(key, now)?.collection()? {
            Value::List(_) => Some(Kind::List),
            Value::ZSet(_) => Some(Kind::ZSet),
            _ => None,
        }
    }

    fn wake_next(&self, inner: &mut Inner, key: &[u8], now: UnixMillis) {
        let Some(queue) = inner.queues.get(key) else {
            return;
        };
        // A woken waiter has the key's turn until its pop is proposed.
        if queue.iter().any(|id| {
            inner
                .waiting
                .get(id)
                .is_some_and(|w| w.state == State::Woken)
        }) {
            return;
        }
        let Some(kind) = self.kind_at(key, now) else {
            return;
        };
        let next = queue.iter().find(|id| {
            inner
                .waiting
                .get(id)
                .is_some_and(|w| w.state == State::Idle && w.kind == kind)
        });
        if let Some(w) = next.copied().and_then(|id| inner.waiting.get_mut(&id)) {
            w.state = State::Woken;
            w.wake.notify_one();
        }
    }

    fn set_state(&self, id: u64, state: State) -> Vec<Bytes> {
        let mut inner = self.inner.lock();
        match inner.waiting.get_mut(&id) {
            Some(w) => {
                w.state = state;
                w.keys.clone()
            }
            None => Vec::new(),
        }
    }

    /// Re-examines `keys` (a waiter gave up its turn).
    fn recheck(&self, keys: &[Bytes]) {
        let now = now_ms();
        let mut inner = self.inner.lock();
        for key in keys {
            self.wake_next(&mut inner, key, now);
        }
    }
}

/// One waiting client's place in the queues; dropping it (served, timed out, disconnected)
/// leaves them.
pub struct Registration {
    waiters: Arc<Waiters>,
    id: u64,
    wake: Arc<Notify>,
}

impl Registration {
    /// Resolves when one of the keys is ready and it is this client's turn.
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Whether any of the keys exists now (of any type: a wrong type is the pop's error).
    pub fn any_key_exists(&self, keys: &[Bytes]) -> bool {
        let now = now_ms();
        let slots = self
            .waiters
            .keyspace
            .read_slots(keys.iter().map(|k| &k[..]));
        keys.iter().any(|k| slots.get(k, now).is_some())
    }

    /// The client's pop is being proposed.
    pub fn popping(&self) {
        self.waiters.set_state(self.id, State::Popping);
    }

    /// The pop found every key empty: wait again, in the same place. A key that became ready
    /// while the pop was in flight (its waiters skipped this one) is looked at again.
    pub fn missed(&self) {
        let keys = self.waiters.set_state(self.id, State::Idle);
        self.waiters.recheck(&keys);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let waiters = &self.waiters;
        let gone = {
            let mut inner = waiters.inner.lock();
            let gone = inner.waiting.remove(&self.id);
            if let Some(w) = &gone {
                for key in &w.keys {
                    if let Some(queue) = inner.queues.get_mut(key) {
                        queue.retain(|&id| id != self.id);
                        if queue.is_empty() {
                            inner.queues.remove(key);
                        }
                    }
                }
            }
            gone
        };
        if let Some(w) = gone {
            waiters.count.fetch_sub(1, Ordering::Relaxed);
            // Woken but never proposed (timed out, disconnected): the turn passes on.
            if w.state == State::Woken {
                waiters.recheck(&w.keys);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::value::List;
    use crate::store::Entry;

    fn push(keyspace: &Keyspace, key: &str, items: &[&str]) {
        let mut list = List::default();
        for i in items {
            list.push_back(i.as_bytes());
        }
        let mut slots = keyspace.write_slots([key.as_bytes()]).at(now_ms());
        slots.insert(Entry::new_collection(key.as_bytes(), Value::List(list), 0));
    }

    fn woken(r: &Registration) -> bool {
        use futures::FutureExt;
        r.woken().now_or_never().is_some()
    }

    #[test]
    fn first_waiter_is_woken_alone_then_the_next_after_its_pop() {
        let keyspace = Arc::new(Keyspace::new());
        let waiters = Arc::new(Waiters::new(keyspace.clone()));
        let k = Bytes::from("k");
        let first = waiters.register(std::slice::from_ref(&k), Kind::List);
        let second = waiters.register(std::slice::from_ref(&k), Kind::List);
        assert_eq!(waiters.len(), 2);
        waiters.written(&[b"k"], now_ms());
        assert!(!woken(&first), "nothing there yet");
        push(&keyspace, "k", &["a", "b"]);
        waiters.written(&[b"k"], now_ms());
        waiters.written(&[b"k"], now_ms());
        assert!(woken(&first));
        assert!(!woken(&second), "the first has the turn");
        first.popping();
        waiters.written(&[b"k"], now_ms());
        assert!(
            woken(&second),
            "the key is still non-empty after the first pop"
        );
        drop(first);
        drop(second);
        assert_eq!(waiters.len(), 0);
        assert!(waiters.inner.lock().queues.is_empty());
    }

    #[test]
    fn a_woken_waiter_that_leaves_passes_the_turn() {
        let keyspace = Arc::new(Keyspace::new());
        let waiters = Arc::new(Waiters::new(keyspace.clone()));
        let k = Bytes::from("k");
        let first = waiters.register(std::slice::from_ref(&k), Kind::List);
        let second = waiters.register(std::slice::from_ref(&k), Kind::List);
        let zset_waiter = waiters.register(std::slice::from_ref(&k), Kind::ZSet);
        push(&keyspace, "k", &["a"]);
        waiters.written(&[b"k"], now_ms());
        assert!(woken(&first));
        drop(first);
        assert!(woken(&second));
        assert!(!woken(&zset_waiter), "a list wakes list waiters only");
    }
}
