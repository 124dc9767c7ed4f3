//! Multiplexed connections to Redis, one per thread that uses them (up to a few), shared by
//! that thread's tasks: the commands of concurrent requests travel pipelined on one socket,
//! driven on the thread that awaits their replies, and nothing is asked of Redis per use (a pool
//! checks each connection it hands out with a PING, a round trip per call). The connection is
//! made on first use and made again, through the topology, after it breaks.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::{ConnectionLike, MultiplexedConnection, PubSubStream};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, Pipeline, PushInfo, PushKind, RedisResult, Value};
use tokio::sync::mpsc;

use super::topology::Connector;
use crate::per_thread::PerThread;

/// A connection of any topology; cloning it shares the socket(s).
#[derive(Clone)]
pub enum Link {
    /// A standalone server, or the primary a sentinel named.
    Single(MultiplexedConnection),
    /// Routes every command to the node holding its slot, and follows the cluster's changes.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

/// Writes whose replies nobody reads, in groups that each touch one hash slot. A single
/// server takes them all in one pipeline; a cluster gets one pipeline per group, sent at once.
#[derive(Default)]
pub struct Writes {
    groups: Vec<Vec<Cmd>>,
}

impl Writes {
    /// Adds commands whose keys share one hash slot.
    pub fn group(&mut self, commands: impl IntoIterator<Item = Cmd>) {
        let commands: Vec<Cmd> = commands.into_iter().collect();
        if !commands.is_empty() {
            self.groups.push(commands);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Replies are read as plain values and dropped: cheaper than asking the pipeline to
    /// ignore each one.
    fn pipeline(commands: impl IntoIterator<Item = Cmd>) -> Pipeline {
        let mut pipeline = redis::pipe();
        for command in commands {
            pipeline.add_command(command);
        }
        pipeline
    }
}

/// The connection of one `RedisCache`, and how to make it again.
pub struct SharedConnection {
    connector: Connector,
    config: AsyncConnectionConfig,
    /// The connections in use, one per slot, each with its generation, so that a failure on
    /// an old connection never throws away the new one. A thread keeps to its own slot, so the
    /// task that drives a connection runs on the thread whose requests use it.
    slots: PerThread<Slot>,
    /// Held while connecting, so that a burst of requests makes one connection, not one each.
    connecting: tokio::sync::Mutex<u64>,
}

/// A connection in use and its generation, or none yet.
type Slot = Mutex<Option<(u64, Link)>>;

impl SharedConnection {
    pub fn new(connector: Connector, timeout: Duration) -> Self {
        let config =
            AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(Some(timeout));
        let slots = PerThread::new(|_| Mutex::new(None));
        Self { connector, config, slots, connecting: tokio::sync::Mutex::new(0) }
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    fn slot(&self) -> &Slot {
        self.slots.get()
    }

    fn cached(&self) -> Option<(u64, Link)> {
        self.slot().lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    async fn link(&self) -> RedisResult<(u64, Link)> {
        if let Some(link) = self.cached() {
            return Ok(link);
        }
        let mut generation = self.connecting.lock().await;
        if let Some(link) = self.cached() {
            return Ok(link);
        }
        let link = match &self.connector {
            Connector::Cluster(recipe) => Link::Cluster(recipe.builder().build()?.get_async_connection().await?),
            single => {
                Link::Single(single.client().await?.get_multiplexed_async_connection_with_config(&self.config).await?)
            }
        };
        *generation += 1;
        *self.slot().lock().unwrap_or_else(PoisonError::into_inner) = Some((*generation, link.clone()));
        Ok((*generation, link))
    }

    /// Drops the connection of `generation` (if it is still the one in use): the next call
    /// makes a new one, through Sentinel to whichever server is the primary by then.
    pub fn forget(&self, generation: u64) {
        for slot in self.slots.all() {
            let mut current = slot.lock().unwrap_or_else(PoisonError::into_inner);
            if current.as_ref().is_some_and(|(g, _)| *g == generation) {
                *current = None;
            }
        }
    }

    /// Forgets every connection: after a timeout nobody knows what state it is in.
    pub fn forget_current(&self) {
        for slot in self.slots.all() {
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    pub async fn command<T: FromRedisValue>(&self, command: &Cmd) -> RedisResult<T> {
        let (generation, mut link) = self.link().await?;
        let reply = command.query_async(&mut link).await;
        self.check(generation, reply)
    }

    /// Commands that share one hash slot, in one round trip.
    pub async fn pipeline<T: FromRedisValue>(&self, pipeline: &Pipeline) -> RedisResult<T> {
        let (generation, mut link) = self.link().await?;
        let reply = pipeline.query_async(&mut link).await;
        self.check(generation, reply)
    }

    pub async fn write(&self, writes: Writes) -> RedisResult<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let (generation, link) = self.link().await?;
        let reply = match link {
            Link::Single(mut single) => {
                Writes::pipeline(writes.groups.into_iter().flatten()).query_async::<Value>(&mut single).await.map(drop)
            }
            Link::Cluster(cluster) => {
                let sends = writes.groups.into_iter().map(|group| {
                    let mut connection = cluster.clone();
                    async move { Writes::pipeline(group).query_async::<Value>(&mut connection).await }
                });
                futures_util::future::try_join_all(sends).await.map(drop)
            }
        };
        self.check(generation, reply)
    }

    /// A command for one node of a cluster, by address (a SCAN walks each primary).
    pub async fn command_on(&self, node: &(String, u16), command: Cmd) -> RedisResult<Value> {
        let (generation, link) = self.link().await?;
        let reply = match link {
            Link::Cluster(mut cluster) => {
                let (host, port) = node.clone();
                let route = redis::cluster_routing::RoutingInfo::SingleNode(
                    redis::cluster_routing::SingleNodeRoutingInfo::ByAddress { host, port },
                );
                cluster.route_command(command, route).await
            }
            Link::Single(mut single) => command.query_async(&mut single).await,
        };
        self.check(generation, reply)
    }

    fn check<T>(&self, generation: u64, reply: RedisResult<T>) -> RedisResult<T> {
        if let Err(error) = &reply
            && (error.is_unrecoverable_error()
                || error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly))
        {
            // READONLY: the server we hold was a primary and is a replica now (a failover).
            self.forget(generation);
        }
        reply
    }

    /// A new subscription to `channel` (see [`Subscription`]).
    pub async fn subscribe(&self, channel: &str) -> RedisResult<Subscription> {
        match &self.connector {
            Connector::Cluster(recipe) => {
                // Cluster pub/sub comes as RESP3 pushes; the client subscribes again by itself
                // after reconnecting to a node.
                let (sender, pushes) = mpsc::unbounded_channel();
                let client =
                    recipe.builder().use_protocol(redis::ProtocolVersion::RESP3).push_sender(sender).build()?;
                let mut connection = client.get_async_connection().await?;
                connection.subscribe(channel).await?;
                Ok(Subscription::Cluster { _connection: connection, pushes })
            }
            single => {
                let mut pubsub = single.client().await?.get_async_pubsub().await?;
                pubsub.subscribe(channel).await?;
                let messages = pubsub.into_on_message();
                let Connector::Sentinel { client, master } = single else { return Ok(Subscription::Single(messages)) };
                // A primary demoted by a manual failover keeps serving for seconds before the
                // sentinels turn it into a replica: the sentinels' announcement comes first.
                let mut switches = client.lock().await.async_get_sentinel_client().await?.get_async_pubsub().await?;
                switches.subscribe("+switch-master").await?;
                Ok(Subscription::Sentinel { messages, switches: switches.into_on_message(), master: master.clone() })
            }
        }
    }
}

/// What a subscription hears.
pub enum Notice {
    Message(Vec<u8>),
    /// Messages may have been missed (a node was lost and the subscription made again).
    Gap,
    /// Sentinel named another primary: connections to the old one must go.
    PrimaryMoved,
}

/// Messages on one channel, until the subscription ends.
pub enum Subscription {
    Single(PubSubStream),
    Cluster {
        _connection: ClusterConnection,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
    },
    /// The primary's channel, and the sentinels' announcements of a new primary.
    Sentinel {
        messages: PubSubStream,
        switches: PubSubStream,
        master: String,
    },
}

impl Subscription {
    /// The next notice; `None` once the subscription is gone and a new one must be made.
    pub async fn next(&mut self) -> Option<Notice> {
        match self {
            Self::Single(messages) => {
                messages.next().await.map(|message| Notice::Message(message.get_payload_bytes().to_vec()))
            }
            Self::Sentinel { messages, switches, master } => loop {
                tokio::select! {
                    message = messages.next() => return message.map(|m| Notice::Message(m.get_payload_bytes().to_vec())),
                    switch = switches.next() => {
                        // `<master> <old ip> <old port> <new ip> <new port>`
                        let switch = switch?;
                        if switch.get_payload_bytes().split(|b| *b == b' ').next() == Some(master.as_bytes()) {
                            return Some(Notice::PrimaryMoved);
                        }
                    }
                }
            },
            Self::Cluster { pushes, .. } => loop {
                let push = pushes.recv().await?;
                match push.kind {
                    PushKind::Message => {
                        if let Some(Value::BulkString(payload)) = push.data.into_iter().nth(1) {
                            return Some(Notice::Message(payload));
                        }
                    }
                    // A lost node, and the subscription made again on its successor.
                    PushKind::Disconnection | PushKind::Subscribe => return Some(Notice::Gap),
                    _ => {}
                }
            },
        }
    }
}
