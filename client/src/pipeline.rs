//! Pipelines: many commands sent at once, grouped per node, results in the caller's order.
//!
//! Each node's group goes out as one write and comes back as one batch of replies. A command
//! whose reply is a redirect or a retryable refusal (`MOVED`, `ASK`, `TRYAGAIN`,
//! `CLUSTERDOWN`), or whose group could not be sent, is then run again on its own with the
//! client's full routing and retry rules. A pipeline is not a transaction: commands to
//! different nodes run concurrently, and retried ones run after the others.

use bytes::BytesMut;
use futures::future::join_all;
use shoal_protocol::Frame;

use crate::client::Client;
use crate::cmd::{cmd, Cmd, ToArg};
use crate::error::{Error, ServerErrorKind};
use crate::retry::{classify, Outcome};

/// Commands to run together; build with [`Client::pipeline`], run with
/// [`Pipeline::execute`].
pub struct Pipeline {
    client: Client,
    commands: Vec<Cmd>,
}

impl Pipeline {
    pub(crate) fn new(client: Client) -> Pipeline {
        Pipeline {
            client,
            commands: Vec::new(),
        }
    }

    /// Adds a command.
    pub fn add(&mut self, command: Cmd) -> &mut Self {
        self.commands.push(command);
        self
    }

    /// Adds a command given as its arguments: `p.cmd(["INCR", "n"])`.
    pub fn cmd<I>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator,
        I::Item: ToArg,
    {
        self.add(cmd(args))
    }

    /// Adds `GET key`.
    pub fn get(&mut self, key: impl ToArg) -> &mut Self {
        self.add(Cmd::new("GET").arg(key))
    }

    /// Adds `SET key value`.
    pub fn set(&mut self, key: impl ToArg, value: impl ToArg) -> &mut Self {
        self.add(Cmd::new("SET").arg(key).arg(value))
    }

    /// Adds `DEL key`.
    pub fn del(&mut self, key: impl ToArg) -> &mut Self {
        self.add(Cmd::new("DEL").arg(key))
    }

    /// Adds `INCR key`.
    pub fn incr(&mut self, key: impl ToArg) -> &mut Self {
        self.add(Cmd::new("INCR").arg(key))
    }

    /// Adds `EXPIRE key seconds`.
    pub fn expire(&mut self, key: impl ToArg, seconds: i64) -> &mut Self {
        self.add(Cmd::new("EXPIRE").arg(key).arg(seconds))
    }

    pub fn len(&self) -> usize {
        self.commands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Runs every command; one result per command, in the order they were added. Error
    /// replies are `Err` in their place and do not stop the others.
    pub async fn execute(&self) -> Vec<Result<Frame, Error>> {
        let client = &self.client;
        let n = self.commands.len();
        let mut results: Vec<Option<Result<Frame, Error>>> = (0..n).map(|_| None).collect();
        let mut again: Vec<usize> = Vec::new();
        // Node → positions of the commands it gets, in pipeline order.
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, command) in self.commands.iter().enumerate() {
            match client
                .route(command)
                .and_then(|route| client.pick_node(route))
            {
                Ok(addr) => match groups.iter_mut().find(|(a, _)| *a == addr) {
                    Some((_, group)) => group.push(i),
                    None => groups.push((addr, vec![i])),
                },
                Err(Error::Server {
                    kind: ServerErrorKind::ClusterDown,
                    ..
                }) => again.push(i),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        client.count_requests(n as u64);
        let sent = join_all(groups.iter().map(|(addr, group)| {
            let mut payload = BytesMut::new();
            for &i in group {
                self.commands[i].encode(&mut payload);
            }
            client.send_batch(addr, payload.freeze(), group.len())
        }))
        .await;
        for ((_, group), replies) in groups.iter().zip(sent) {
            match replies {
                Ok(frames) => {
                    for (&i, frame) in group.iter().zip(frames) {
                        let write = self.commands[i].route().map_or(true, |r| r.write);
                        match classify(Ok(frame), write) {
                            Outcome::Reply(f) => results[i] = Some(Ok(f)),
                            Outcome::Fail(e) => results[i] = Some(Err(e)),
                            Outcome::Moved { slot, addr } => {
                                client.apply_moved(slot, &addr, client.map_generation());
                                again.push(i);
                            }
                            Outcome::Ask { .. } | Outcome::Retry(_) => again.push(i),
                        }
                    }
                }
                Err(e) => {
                    for &i in group {
                        let write = self.commands[i].route().map_or(true, |r| r.write);
                        match classify(Err(e.clone()), write) {
                            Outcome::Fail(e) => results[i] = Some(Err(e)),
                            _ => again.push(i),
                        }
                    }
                }
            }
        }
        let retried = join_all(again.iter().map(|&i| client.execute(&self.commands[i]))).await;
        for (&i, result) in again.iter().zip(retried) {
            results[i] = Some(result);
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(Error::UnexpectedReply("no reply for a command".into())))
            })
            .collect()
    }
}
