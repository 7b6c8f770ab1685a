//! Pub/sub delivery on one node: who is subscribed to what, and each subscriber's queue.
//!
//! Messages never go through Raft: as in Redis they are fire-and-forget. A `PUBLISH` is
//! delivered to this node's subscribers and sent once to every other node
//! (`PeerRequest::Publish`), which delivers it to its own; a node that is down misses it.
//!
//! Each connection has one bounded [`Mailbox`] (at most [`QUEUE_CAPACITY`] messages and
//! [`QUEUE_BYTES`] of payload). A subscriber whose queue is full cannot keep up: [`on_queue_full`] decides what happens to it (today it
//! is disconnected, as Redis's default `client-output-buffer-limit pubsub` does), so its
//! memory never grows without bound.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use shoal_protocol::Frame;
use tokio::sync::mpsc;

use crate::clients::ClientHandle;
use crate::glob::glob_match;

/// Messages queued for one connection before it counts as unable to keep up.
pub const QUEUE_CAPACITY: usize = 4096;
/// Payload bytes queued for one connection before it counts as unable to keep up (Redis's
/// default hard `client-output-buffer-limit` for pub/sub clients).
pub const QUEUE_BYTES: usize = 32 << 20;

/// The three namespaces: channels, patterns, shard channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    Channel,
    Pattern,
    Shard,
}

impl Kind {
    /// The confirmation word (`subscribe`) and its opposite (`unsubscribe`).
    pub fn words(self) -> (&'static str, &'static str) {
        match self {
            Kind::Channel => ("subscribe", "unsubscribe"),
            Kind::Pattern => ("psubscribe", "punsubscribe"),
            Kind::Shard => ("ssubscribe", "sunsubscribe"),
        }
    }
}

/// One published message as a subscriber receives it (a push frame).
pub type Delivery = Frame;

/// The receiving end a connection reads its messages from.
pub struct Mailbox {
    queue: mpsc::Receiver<(Delivery, usize)>,
    queued_bytes: Arc<AtomicUsize>,
}

impl Mailbox {
    /// The next message (waits for one).
    pub async fn recv(&mut self) -> Option<Delivery> {
        let (frame, size) = self.queue.recv().await?;
        self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
        Some(frame)
    }

    /// The next message if one is queued.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        let (frame, size) = self.queue.try_recv().ok()?;
        self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
        Some(frame)
    }
}

#[derive(Clone)]
struct Subscriber {
    queue: mpsc::Sender<(Delivery, usize)>,
    queued_bytes: Arc<AtomicUsize>,
    handle: Arc<ClientHandle>,
}

impl Subscriber {
    /// Queues a message of `size` payload bytes; false if the subscriber is over its limits.
    fn offer(&self, frame: Frame, size: usize) -> bool {
        if self.queued_bytes.fetch_add(size, Ordering::Relaxed) + size > QUEUE_BYTES {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        if self.queue.try_send((frame, size)).is_err() {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// The subscribers of one channel (or pattern), by client id.
type Subscribers = HashMap<u64, Subscriber>;

/// A node's subscriptions.
#[derive(Default)]
pub struct Hub {
    /// Per kind: name → its subscribers.
    subs: RwLock<HashMap<Kind, HashMap<Bytes, Subscribers>>>,
}

impl Hub {
    /// Delivers a message published to `channel` (`shard`: by `SPUBLISH`) to this node's
    /// subscribers; returns how many received it.
    pub fn deliver(&self, channel: &Bytes, message: &Bytes, shard: bool) -> usize {
        let subs = self.subs.read();
        let mut receivers = 0;
        let kinds: &[Kind] = if shard {
            &[Kind::Shard]
        } else {
            &[Kind::Channel, Kind::Pattern]
        };
        for &kind in kinds {
            let Some(names) = subs.get(&kind) else {
                continue;
            };
            let matching = names.iter().filter(|(name, _)| match kind {
                Kind::Pattern => glob_match(name, channel, false),
                _ => *name == channel,
            });
            for (name, clients) in matching {
                let frame = match kind {
                    Kind::Channel => push(&["message"], &[channel, message]),
                    Kind::Shard => push(&["smessage"], &[channel, message]),
                    Kind::Pattern => push(&["pmessage"], &[name, channel, message]),
                };
                let size = channel.len() + message.len();
                for subscriber in clients.values() {
                    receivers += 1;
                    if !subscriber.offer(frame.clone(), size) {
                        on_queue_full(&subscriber.handle);
                    }
                }
            }
        }
        receivers
    }

    fn add(&self, kind: Kind, name: &Bytes, subscriber: Subscriber) {
        let mut subs = self.subs.write();
        let clients = subs
            .entry(kind)
            .or_default()
            .entry(name.clone())
            .or_default();
        clients.insert(subscriber.handle.id, subscriber);
    }

    fn remove(&self, kind: Kind, name: &Bytes, client: u64) {
        let mut subs = self.subs.write();
        let Some(names) = subs.get_mut(&kind) else {
            return;
        };
        if let Some(clients) = names.get_mut(name) {
            clients.remove(&client);
            if clients.is_empty() {
                names.remove(name);
            }
        }
    }

    /// Names of `kind` with at least one subscriber, matching `pattern` if given.
    pub fn names(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let subs = self.subs.read();
        subs.get(&kind)
            .into_iter()
            .flat_map(|names| names.keys())
            .filter(|name| pattern.is_none_or(|p| glob_match(p, name, false)))
            .cloned()
            .collect()
    }

    /// Subscribers of `name` in `kind` on this node.
    pub fn count(&self, kind: Kind, name: &[u8]) -> usize {
        let subs = self.subs.read();
        subs.get(&kind)
            .and_then(|names| names.get(name))
            .map_or(0, HashMap::len)
    }
}

/// A subscriber whose queue is full. The hook for output-buffer limits
/// (`client-output-buffer-limit pubsub`): today the client is disconnected, as Redis does when
/// a subscriber passes its hard limit; the messages it missed are dropped.
pub fn on_queue_full(handle: &ClientHandle) {
    if !handle.kill.is_cancelled() {
        tracing::warn!(
            client = handle.id,
            "closing subscriber that cannot keep up with its messages"
        );
        handle.kill.cancel();
    }
}

/// A push frame of words and binary-safe values (`message`, channel, payload).
pub fn push(words: &[&'static str], values: &[&Bytes]) -> Frame {
    Frame::Push(
        words
            .iter()
            .map(|w| Frame::bulk(*w))
            .chain(values.iter().map(|v| Frame::Bulk((*v).clone())))
            .collect(),
    )
}

/// A connection's subscriptions. Dropping it unsubscribes everything.
#[derive(Default)]
pub struct Subscriptions {
    /// The hub and this connection's queue (`None` for sessions without a connection).
    attached: Option<(Arc<Hub>, Subscriber)>,
    names: HashMap<Kind, HashSet<Bytes>>,
}

impl Subscriptions {
    /// Connects a client connection to the hub; returns where its messages arrive.
    pub fn attach(&mut self, hub: Arc<Hub>, handle: Arc<ClientHandle>) -> Mailbox {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let subscriber = Subscriber {
            queue,
            queued_bytes: queued_bytes.clone(),
            handle,
        };
        self.attached = Some((hub, subscriber));
        Mailbox {
            queue: receiver,
            queued_bytes,
        }
    }

    /// Channels, patterns and shard channels this connection is subscribed to.
    pub fn total(&self) -> usize {
        self.names.values().map(HashSet::len).sum()
    }

    /// Subscribed to `name`'s of `kind`.
    pub fn list(&self, kind: Kind) -> Vec<Bytes> {
        let mut names: Vec<Bytes> = self
            .names
            .get(&kind)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// The count a (un)subscribe confirmation shows: shard channels are counted apart from
    /// channels and patterns, as in Redis.
    pub fn count(&self, kind: Kind) -> usize {
        let len = |k| self.names.get(&k).map_or(0, HashSet::len);
        match kind {
            Kind::Shard => len(Kind::Shard),
            _ => len(Kind::Channel) + len(Kind::Pattern),
        }
    }

    /// Subscribes; returns the confirmation count.
    pub fn subscribe(&mut self, kind: Kind, name: &Bytes) -> Option<usize> {
        let (hub, subscriber) = self.attached.as_ref()?;
        if self.names.entry(kind).or_default().insert(name.clone()) {
            hub.add(kind, name, subscriber.clone());
        }
        Some(self.count(kind))
    }

    /// Unsubscribes; returns the confirmation count.
    pub fn unsubscribe(&mut self, kind: Kind, name: &Bytes) -> usize {
        let removed = self.names.get_mut(&kind).is_some_and(|n| n.remove(name));
        if let (true, Some((hub, subscriber))) = (removed, &self.attached) {
            hub.remove(kind, name, subscriber.handle.id);
        }
        self.count(kind)
    }

    /// Unsubscribes from everything (`RESET`, disconnect).
    pub fn clear(&mut self) {
        for kind in [Kind::Channel, Kind::Pattern, Kind::Shard] {
            for name in self.list(kind) {
                self.unsubscribe(kind, &name);
            }
        }
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Several top-level replies to one request (`SUBSCRIBE a b` confirms each channel in a
/// reply of its own): carried as a push of pushes, which [`encode_reply`] writes one by one.
pub fn several(replies: Vec<Frame>) -> Frame {
    Frame::Push(replies)
}

/// Encodes a reply for the connection, writing [`several`] replies one after another.
pub fn encode_reply(reply: &Frame, version: shoal_protocol::Version, out: &mut bytes::BytesMut) {
    match reply {
        Frame::Push(items) if items.iter().all(|i| matches!(i, Frame::Push(_))) => {
            for item in items {
                shoal_protocol::encode(item, version, out);
            }
        }
        _ => shoal_protocol::encode(reply, version, out),
    }
}
