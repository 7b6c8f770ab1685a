//! Pub/sub delivery on one node: who is subscribed to what, and each subscriber's queue.
//!
//! Messages never go through Raft: as in Redis they are fire-and-forget. A `PUBLISH` is
//! delivered to this node's subscribers and sent once to every other node
//! (`PeerRequest::Publish`), which delivers it to its own; a node that is down misses it.
//!
//! Each connection has one [`Mailbox`], bounded in bytes by the hard
//! `client-output-buffer-limit` of the pubsub class ([`Hub::set_limit`]): a subscriber whose
//! queue would pass it cannot keep up and is disconnected (as Redis does), so its memory never
//! grows without bound. The connection enforces the soft limit, counting these queued bytes
//! with its own unsent ones.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use shoal_protocol::Frame;
use tokio::sync::mpsc;

use crate::clients::ClientHandle;
use crate::glob::glob_match;

/// What a queued message costs beyond its channel and payload bytes (the push frame's words,
/// its RESP framing, the queue slot), so many tiny messages count too.
pub const MESSAGE_OVERHEAD: usize = 64;

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
    queue: mpsc::UnboundedReceiver<(Delivery, usize)>,
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

    /// Bytes queued and not yet taken by the connection.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    /// The counter of [`Self::queued_bytes`], for checks made while the mailbox is borrowed.
    pub fn queued_counter(&self) -> Arc<AtomicUsize> {
        self.queued_bytes.clone()
    }
}

#[derive(Clone)]
struct Subscriber {
    queue: mpsc::UnboundedSender<(Delivery, usize)>,
    queued_bytes: Arc<AtomicUsize>,
    handle: Arc<ClientHandle>,
}

impl Subscriber {
    /// Queues a message of `size` bytes; false if that would reach `limit` (0: no limit).
    fn offer(&self, frame: Frame, size: usize, limit: usize) -> bool {
        let queued = self.queued_bytes.fetch_add(size, Ordering::Relaxed) + size;
        if limit > 0 && queued >= limit {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        if self.queue.send((frame, size)).is_err() {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
        }
        true
    }
}

/// The subscribers of one channel (or pattern), by client id.
type Subscribers = HashMap<u64, Subscriber>;

/// A node's subscriptions.
pub struct Hub {
    /// Per kind: name → its subscribers.
    subs: RwLock<HashMap<Kind, HashMap<Bytes, Subscribers>>>,
    /// Bytes one subscriber's queue may hold (the pubsub class's hard output buffer limit).
    limit: AtomicUsize,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            subs: RwLock::default(),
            limit: AtomicUsize::new(
                crate::net::output_limit::OutputLimits::default()
                    .pubsub
                    .hard as usize,
            ),
        }
    }
}

impl Hub {
    /// Sets the bytes a subscriber's queue may hold (0: no limit).
    pub fn set_limit(&self, bytes: u64) {
        self.limit.store(
            usize::try_from(bytes).unwrap_or(usize::MAX),
            Ordering::Relaxed,
        );
    }

    /// Delivers a message published to `channel` (`shard`: by `SPUBLISH`) to this node's
    /// subscribers; returns how many received it.
    pub fn deliver(&self, channel: &Bytes, message: &Bytes, shard: bool) -> usize {
        let subs = self.subs.read();
        let limit = self.limit.load(Ordering::Relaxed);
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
                let pattern = if kind == Kind::Pattern { name.len() } else { 0 };
                let size = pattern + channel.len() + message.len() + MESSAGE_OVERHEAD;
                for subscriber in clients.values() {
                    receivers += 1;
                    if !subscriber.offer(frame.clone(), size, limit) {
                        subscriber.handle.close_for_output_limit("pubsub", "hard");
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
        let (queue, receiver) = mpsc::unbounded_channel();
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
