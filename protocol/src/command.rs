//! The command table: every command shoal knows, described once.
//!
//! Dispatch (via [`CommandId`]), arity errors, key extraction (and so slot routing), ACL
//! categories and the `COMMAND` / `COMMAND DOCS` replies all read this table. Adding a command is
//! adding one line here plus its implementation; the server's dispatcher matches on
//! `CommandId` exhaustively, so a line without an implementation does not compile.
//!
//! Subcommands (`CONFIG GET`) are entries of their own named `parent|sub`, as Redis names them.

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;

/// Command flags, with Redis's names (see `COMMAND INFO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flags(u32);

macro_rules! flags {
    ($($name:ident = $bit:expr, $text:expr;)*) => {
        impl Flags {
            $(pub const $name: Flags = Flags(1 << $bit);)*
            /// Every flag with the text `COMMAND` shows for it (`None`: internal only).
            const NAMES: &'static [(Flags, Option<&'static str>)] = &[$((Flags::$name, $text),)*];
        }
    };
}

flags! {
    WRITE = 0, Some("write");
    READONLY = 1, Some("readonly");
    DENYOOM = 2, Some("denyoom");
    ADMIN = 3, Some("admin");
    NOSCRIPT = 4, Some("noscript");
    LOADING = 5, Some("loading");
    STALE = 6, Some("stale");
    FAST = 7, Some("fast");
    NO_AUTH = 8, Some("no_auth");
    ALLOW_BUSY = 9, Some("allow_busy");
    SENTINEL = 10, Some("sentinel");
    BLOCKING = 11, Some("blocking");
    PUBSUB = 12, Some("pubsub");
    NO_MULTI = 13, Some("no_multi");
    MOVABLEKEYS = 14, Some("movablekeys");
    // Internal: adds the `@dangerous` ACL category without being a COMMAND flag.
    DANGEROUS = 20, None;
    // Internal routing tips (Redis shows them as `request_policy:all_shards|multi_shard`):
    // run on every shard and combine the replies; or split the keys by shard and combine.
    ALL_SHARDS = 21, None;
    MULTI_SHARD = 22, None;
    // Internal: a write whose log entry the leader builds from the data as it is (SPOP's random
    // choice), so it must see the writes pipelined before it applied.
    BUILT_FROM_DATA = 23, None;
}

impl Flags {
    pub const NONE: Flags = Flags(0);

    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flag names `COMMAND INFO` shows.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Flags::NAMES
            .iter()
            .filter(move |(f, _)| self.contains(*f))
            .filter_map(|(_, name)| *name)
    }
}

/// The documentation group of a command (`COMMAND DOCS` `group`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    Generic,
    String,
    Connection,
    Server,
    Cluster,
    Transactions,
    Pubsub,
    Hash,
    List,
    Set,
    SortedSet,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Generic => "generic",
            Group::String => "string",
            Group::Connection => "connection",
            Group::Server => "server",
            Group::Cluster => "cluster",
            Group::Transactions => "transactions",
            Group::Pubsub => "pubsub",
            Group::Hash => "hash",
            Group::List => "list",
            Group::Set => "set",
            Group::SortedSet => "sorted-set",
        }
    }

    fn acl_category(self) -> Option<&'static str> {
        match self {
            Group::Generic => Some("@keyspace"),
            Group::String => Some("@string"),
            Group::Connection => Some("@connection"),
            Group::Transactions => Some("@transaction"),
            Group::Pubsub => Some("@pubsub"),
            Group::Server | Group::Cluster => None,
            Group::Hash => Some("@hash"),
            Group::List => Some("@list"),
            Group::Set => Some("@set"),
            Group::SortedSet => Some("@sortedset"),
        }
    }
}

/// Where a command's keys are: `first`, `last` (negative counts from the end), `step`, as in
/// Redis's legacy key specification (`first == 0`: none there), plus `numkeys`: the index of
/// an argument that counts the keys right after it (`ZUNIONSTORE dest 2 a b`), 0 if none;
/// and `sort_store`: the argument after `SORT`'s last `STORE` is a key too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpec {
    pub first: i32,
    pub last: i32,
    pub step: i32,
    pub numkeys: i32,
    pub sort_store: bool,
}

impl KeySpec {
    /// `SORT key ... [STORE dest]`: the sorted key, and the destination (Redis's
    /// `sortGetKeys`).
    pub const SORT: KeySpec = KeySpec {
        sort_store: true,
        ..KeySpec::ONE
    };
    pub const NONE: KeySpec = KeySpec {
        first: 0,
        last: 0,
        step: 0,
        numkeys: 0,
        sort_store: false,
    };
    pub const ONE: KeySpec = KeySpec {
        first: 1,
        last: 1,
        step: 1,
        numkeys: 0,
        sort_store: false,
    };
    pub const ALL: KeySpec = KeySpec {
        first: 1,
        last: -1,
        step: 1,
        numkeys: 0,
        sort_store: false,
    };
    pub const PAIRS: KeySpec = KeySpec {
        first: 1,
        last: -1,
        step: 2,
        numkeys: 0,
        sort_store: false,
    };
    pub const TWO: KeySpec = KeySpec {
        first: 1,
        last: 2,
        step: 1,
        numkeys: 0,
        sort_store: false,
    };
    /// The one key after a subcommand (`OBJECT ENCODING key`, `MEMORY USAGE key`).
    pub const SECOND: KeySpec = KeySpec {
        first: 2,
        last: 2,
        step: 1,
        numkeys: 0,
        sort_store: false,
    };
    /// `BLPOP k1 k2 timeout`.
    pub const ALL_BUT_LAST: KeySpec = KeySpec {
        first: 1,
        last: -2,
        step: 1,
        numkeys: 0,
        sort_store: false,
    };
    /// `LMPOP numkeys k1 k2 ...`, `ZUNION`, `SINTERCARD`.
    pub const NUMKEYS_1: KeySpec = KeySpec {
        first: 0,
        last: 0,
        step: 0,
        numkeys: 1,
        sort_store: false,
    };
    /// `BLMPOP timeout numkeys k1 k2 ...`, `BZMPOP`.
    pub const NUMKEYS_2: KeySpec = KeySpec {
        first: 0,
        last: 0,
        step: 0,
        numkeys: 2,
        sort_store: false,
    };
    /// `ZUNIONSTORE dest numkeys k1 k2 ...`.
    pub const DEST_NUMKEYS_2: KeySpec = KeySpec {
        first: 1,
        last: 1,
        step: 1,
        numkeys: 2,
        sort_store: false,
    };
}

/// One command (or subcommand).
#[derive(Debug)]
pub struct CommandSpec {
    pub id: CommandId,
    /// Lowercase; `parent|sub` for subcommands.
    pub name: &'static str,
    /// Redis's arity: `n` means exactly n arguments including the name, `-n` at least n.
    pub arity: i32,
    pub flags: Flags,
    pub keys: KeySpec,
    pub group: Group,
    pub since: &'static str,
    pub summary: &'static str,
}

macro_rules! command_table {
    ($($id:ident => $name:literal, $arity:literal, [$($flag:ident)*], $keys:ident, $group:ident, $since:literal, $summary:literal;)*) => {
        /// Names every command in the table; the dispatcher matches on it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum CommandId { $($id,)* }

        /// Every command, in the order `COMMAND` lists them.
        pub static COMMANDS: &[CommandSpec] = &[$(
            CommandSpec {
                id: CommandId::$id,
                name: $name,
                arity: $arity,
                flags: Flags::NONE$(.union(Flags::$flag))*,
                keys: KeySpec::$keys,
                group: Group::$group,
                since: $since,
                summary: $summary,
            },
        )*];
    };
}

command_table! {
    // connection
    Ping => "ping", -1, [FAST SENTINEL], NONE, Connection, "1.0.0", "Returns the server's liveliness response.";
    Echo => "echo", 2, [FAST], NONE, Connection, "1.0.0", "Returns the given string.";
    Hello => "hello", -1, [NOSCRIPT LOADING STALE FAST NO_AUTH SENTINEL ALLOW_BUSY], NONE, Connection, "6.0.0", "Handshakes with the Redis server.";
    Auth => "auth", -2, [NOSCRIPT LOADING STALE FAST NO_AUTH SENTINEL ALLOW_BUSY], NONE, Connection, "1.0.0", "Authenticates the connection.";
    Select => "select", 2, [LOADING STALE FAST], NONE, Connection, "1.0.0", "Changes the selected database.";
    Quit => "quit", -1, [ALLOW_BUSY NOSCRIPT LOADING STALE FAST NO_AUTH], NONE, Connection, "1.0.0", "Closes the connection.";
    Reset => "reset", 1, [NOSCRIPT LOADING STALE FAST NO_AUTH ALLOW_BUSY], NONE, Connection, "6.2.0", "Resets the connection.";
    Client => "client", -2, [SENTINEL], NONE, Connection, "2.4.0", "A container for client connection commands.";
    ClientId => "client|id", 2, [NOSCRIPT LOADING STALE], NONE, Connection, "5.0.0", "Returns the unique client ID of the connection.";
    ClientSetname => "client|setname", 3, [NOSCRIPT LOADING STALE], NONE, Connection, "2.6.9", "Sets the connection name.";
    ClientGetname => "client|getname", 2, [NOSCRIPT LOADING STALE], NONE, Connection, "2.6.9", "Returns the name of the connection.";
    ClientList => "client|list", -2, [ADMIN NOSCRIPT LOADING STALE DANGEROUS], NONE, Connection, "2.4.0", "Lists open connections.";
    ClientInfo => "client|info", 2, [NOSCRIPT LOADING STALE], NONE, Connection, "6.2.0", "Returns information about the connection.";
    ClientSetinfo => "client|setinfo", 4, [NOSCRIPT LOADING STALE], NONE, Connection, "7.2.0", "Sets information specific to the client or connection.";
    ClientKill => "client|kill", -3, [ADMIN NOSCRIPT LOADING STALE DANGEROUS], NONE, Connection, "2.4.0", "Terminates open connections.";
    ClientUnblock => "client|unblock", -3, [ADMIN NOSCRIPT LOADING STALE DANGEROUS], NONE, Connection, "5.0.0", "Unblocks a client blocked by a blocking command from a different connection.";
    ClientHelp => "client|help", 2, [LOADING STALE], NONE, Connection, "5.0.0", "Returns helpful text about the different subcommands.";

    // server
    Command => "command", -1, [LOADING STALE SENTINEL], NONE, Server, "2.8.13", "Returns detailed information about all commands.";
    CommandCount => "command|count", 2, [LOADING STALE], NONE, Server, "2.8.13", "Returns a count of commands.";
    CommandInfo => "command|info", -2, [LOADING STALE], NONE, Server, "2.8.13", "Returns information about one, multiple or all commands.";
    CommandDocs => "command|docs", -2, [LOADING STALE], NONE, Server, "7.0.0", "Returns documentary information about one, multiple or all commands.";
    CommandList => "command|list", -2, [LOADING STALE], NONE, Server, "7.0.0", "Returns a list of command names.";
    CommandGetkeys => "command|getkeys", -3, [LOADING STALE], NONE, Server, "2.8.13", "Extracts the key names from an arbitrary command.";
    CommandHelp => "command|help", 2, [LOADING STALE], NONE, Server, "5.0.0", "Returns helpful text about the different subcommands.";
    Config => "config", -2, [], NONE, Server, "2.0.0", "A container for server configuration commands.";
    ConfigGet => "config|get", -3, [ADMIN NOSCRIPT LOADING STALE DANGEROUS], NONE, Server, "2.0.0", "Returns the effective values of configuration parameters.";
    ConfigSet => "config|set", -4, [ADMIN NOSCRIPT LOADING STALE DANGEROUS], NONE, Server, "2.0.0", "Sets configuration parameters in-flight.";
    ConfigResetstat => "config|resetstat", 2, [ADMIN NOSCRIPT LOADING STALE DANGEROUS], NONE, Server, "2.0.0", "Resets the server's statistics.";
    ConfigHelp => "config|help", 2, [LOADING STALE], NONE, Server, "5.0.0", "Returns helpful text about the different subcommands.";
    ConfigRewrite => "config|rewrite", 2, [ADMIN NOSCRIPT LOADING STALE], NONE, Server, "2.8.0", "Persists the effective configuration to file.";
    Info => "info", -1, [LOADING STALE SENTINEL DANGEROUS], NONE, Server, "1.0.0", "Returns information and statistics about the server.";
    Time => "time", 1, [LOADING STALE FAST], NONE, Server, "2.6.0", "Returns the server time.";
    Dbsize => "dbsize", 1, [READONLY FAST ALL_SHARDS], NONE, Server, "1.0.0", "Returns the number of keys in the database.";
    Flushdb => "flushdb", -1, [WRITE DANGEROUS ALL_SHARDS], NONE, Server, "1.0.0", "Removes all keys from the current database.";
    Flushall => "flushall", -1, [WRITE DANGEROUS ALL_SHARDS], NONE, Server, "1.0.0", "Removes all keys from all databases.";
    Slowlog => "slowlog", -2, [], NONE, Server, "2.2.12", "A container for slow log commands.";
    SlowlogGet => "slowlog|get", -2, [ADMIN LOADING STALE], NONE, Server, "2.2.12", "Returns the slow log's entries.";
    SlowlogLen => "slowlog|len", 2, [ADMIN LOADING STALE], NONE, Server, "2.2.12", "Returns the number of entries in the slow log.";
    SlowlogReset => "slowlog|reset", 2, [ADMIN LOADING STALE], NONE, Server, "2.2.12", "Clears all entries from the slow log.";
    SlowlogHelp => "slowlog|help", 2, [LOADING STALE], NONE, Server, "6.2.0", "Show helpful text about the different subcommands.";
    Monitor => "monitor", 1, [ADMIN NOSCRIPT LOADING STALE], NONE, Server, "1.0.0", "Listens for all requests received by the server in real-time.";
    Latency => "latency", -2, [], NONE, Server, "2.8.13", "A container for latency diagnostics commands.";
    LatencyHistogram => "latency|histogram", -2, [ADMIN NOSCRIPT LOADING STALE], NONE, Server, "7.0.0", "Returns the cumulative distribution of latencies of a subset or all commands.";
    LatencyHelp => "latency|help", 2, [LOADING STALE], NONE, Server, "2.8.13", "Returns helpful text about the different subcommands.";
    Acl => "acl", -2, [SENTINEL], NONE, Server, "6.0.0", "A container for Access List Control commands.";
    AclSetuser => "acl|setuser", -3, [ADMIN NOSCRIPT LOADING STALE SENTINEL], NONE, Server, "6.0.0", "Creates and modifies an ACL user and its rules.";
    AclGetuser => "acl|getuser", 3, [ADMIN NOSCRIPT LOADING STALE SENTINEL], NONE, Server, "6.0.0", "Lists the ACL rules of a user.";
    AclDeluser => "acl|deluser", -3, [ADMIN NOSCRIPT LOADING STALE SENTINEL], NONE, Server, "6.0.0", "Deletes ACL users, and terminates their connections.";
    AclList => "acl|list", 2, [ADMIN NOSCRIPT LOADING STALE SENTINEL], NONE, Server, "6.0.0", "Dumps the effective rules in ACL file format.";
    AclUsers => "acl|users", 2, [ADMIN NOSCRIPT LOADING STALE SENTINEL], NONE, Server, "6.0.0", "Lists all ACL users.";
    AclWhoami => "acl|whoami", 2, [NOSCRIPT LOADING STALE SENTINEL], NONE, Server, "6.0.0", "Returns the authenticated username of the current connection.";
    AclCat => "acl|cat", -2, [NOSCRIPT LOADING STALE SENTINEL], NONE, Server, "6.0.0", "Lists the ACL categories, or the commands inside a category.";
    AclLog => "acl|log", -2, [ADMIN NOSCRIPT LOADING STALE SENTINEL], NONE, Server, "6.0.0", "Lists recent security events generated due to ACL rules.";
    AclHelp => "acl|help", 2, [LOADING STALE SENTINEL], NONE, Server, "6.0.0", "Returns helpful text about the different subcommands.";
    Memory => "memory", -2, [], NONE, Server, "4.0.0", "A container for memory diagnostics commands.";
    MemoryUsage => "memory|usage", -3, [READONLY], SECOND, Server, "4.0.0", "Estimates the memory usage of a key.";
    MemoryStats => "memory|stats", 2, [], NONE, Server, "4.0.0", "Returns details about memory usage.";
    MemoryHelp => "memory|help", 2, [LOADING STALE], NONE, Server, "4.0.0", "Returns helpful text about the different subcommands.";

    // cluster
    Cluster => "cluster", -2, [], NONE, Cluster, "3.0.0", "A container for Redis Cluster commands.";
    ClusterInfo => "cluster|info", 2, [LOADING STALE], NONE, Cluster, "3.0.0", "Returns information about the state of a node.";
    ClusterHelp => "cluster|help", 2, [LOADING STALE], NONE, Cluster, "5.0.0", "Returns helpful text about the different subcommands.";
    ClusterSlots => "cluster|slots", 2, [LOADING STALE], NONE, Cluster, "3.0.0", "Returns the mapping of cluster slots to nodes.";
    ClusterShards => "cluster|shards", 2, [LOADING STALE], NONE, Cluster, "7.0.0", "Returns the mapping of cluster slots to shards.";
    ClusterNodes => "cluster|nodes", 2, [LOADING STALE], NONE, Cluster, "3.0.0", "Returns the cluster configuration for a node.";
    ClusterMyid => "cluster|myid", 2, [LOADING STALE], NONE, Cluster, "3.0.0", "Returns the ID of a node.";
    ClusterMyshardid => "cluster|myshardid", 2, [LOADING STALE], NONE, Cluster, "7.2.0", "Returns the shard ID of a node.";
    ClusterKeyslot => "cluster|keyslot", 3, [STALE], NONE, Cluster, "3.0.0", "Returns the hash slot for a key.";
    ClusterCountkeysinslot => "cluster|countkeysinslot", 3, [STALE], NONE, Cluster, "3.0.0", "Returns the number of keys in a hash slot.";
    ClusterGetkeysinslot => "cluster|getkeysinslot", 4, [STALE], NONE, Cluster, "3.0.0", "Returns the key names in a hash slot.";
    ClusterForget => "cluster|forget", 3, [ADMIN NOSCRIPT STALE], NONE, Cluster, "3.0.0", "Removes a node from the nodes table.";
    ClusterLinks => "cluster|links", 2, [LOADING STALE], NONE, Cluster, "7.0.0", "Returns a list of all TCP links to and from peer nodes.";
    Readonly => "readonly", 1, [LOADING STALE FAST], NONE, Cluster, "3.0.0", "Enables read-only queries for a connection to a Redis Cluster replica node.";
    Readwrite => "readwrite", 1, [LOADING STALE FAST], NONE, Cluster, "3.0.0", "Enables read-write queries for a connection to a Redis Cluster replica node.";
    Asking => "asking", 1, [FAST], NONE, Cluster, "3.0.0", "Signals that a cluster client is following an -ASK redirect.";

    // strings
    Get => "get", 2, [READONLY FAST], ONE, String, "1.0.0", "Returns the string value of a key.";
    Set => "set", -3, [WRITE DENYOOM], ONE, String, "1.0.0", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.";
    Setnx => "setnx", 3, [WRITE DENYOOM FAST], ONE, String, "1.0.0", "Set the string value of a key only when the key doesn't exist.";
    Setex => "setex", 4, [WRITE DENYOOM], ONE, String, "2.0.0", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.";
    Psetex => "psetex", 4, [WRITE DENYOOM], ONE, String, "2.6.0", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.";
    Getset => "getset", 3, [WRITE DENYOOM FAST], ONE, String, "1.0.0", "Returns the previous string value of a key after setting it to a new value.";
    Getdel => "getdel", 2, [WRITE FAST], ONE, String, "6.2.0", "Returns the string value of a key after deleting the key.";
    Getex => "getex", -2, [WRITE FAST], ONE, String, "6.2.0", "Returns the string value of a key after setting its expiration time.";
    Mget => "mget", -2, [READONLY FAST MULTI_SHARD], ALL, String, "1.0.0", "Atomically returns the string values of one or more keys.";
    Mset => "mset", -3, [WRITE DENYOOM MULTI_SHARD], PAIRS, String, "1.0.1", "Atomically creates or modifies the string values of one or more keys.";
    Msetnx => "msetnx", -3, [WRITE DENYOOM], PAIRS, String, "1.0.1", "Atomically modifies the string values of one or more keys only when all keys don't exist.";
    Append => "append", 3, [WRITE DENYOOM FAST], ONE, String, "2.0.0", "Appends a string to the value of a key. Creates the key if it doesn't exist.";
    Strlen => "strlen", 2, [READONLY FAST], ONE, String, "2.2.0", "Returns the length of a string value.";
    Getrange => "getrange", 4, [READONLY], ONE, String, "2.4.0", "Returns a substring of the string stored at a key.";
    Substr => "substr", 4, [READONLY], ONE, String, "1.0.0", "Returns a substring from a string value.";
    Setrange => "setrange", 4, [WRITE DENYOOM], ONE, String, "2.2.0", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.";
    Incr => "incr", 2, [WRITE DENYOOM FAST], ONE, String, "1.0.0", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.";
    Decr => "decr", 2, [WRITE DENYOOM FAST], ONE, String, "1.0.0", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.";
    Incrby => "incrby", 3, [WRITE DENYOOM FAST], ONE, String, "1.0.0", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.";
    Decrby => "decrby", 3, [WRITE DENYOOM FAST], ONE, String, "1.0.0", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.";
    Incrbyfloat => "incrbyfloat", 3, [WRITE DENYOOM FAST], ONE, String, "2.6.0", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.";

    // keys
    Del => "del", -2, [WRITE MULTI_SHARD], ALL, Generic, "1.0.0", "Deletes one or more keys.";
    Unlink => "unlink", -2, [WRITE FAST MULTI_SHARD], ALL, Generic, "4.0.0", "Asynchronously deletes one or more keys.";
    Exists => "exists", -2, [READONLY FAST MULTI_SHARD], ALL, Generic, "1.0.0", "Determines whether one or more keys exist.";
    Type => "type", 2, [READONLY FAST], ONE, Generic, "1.0.0", "Determines the type of value stored at a key.";
    Rename => "rename", 3, [WRITE], TWO, Generic, "1.0.0", "Renames a key and overwrites the destination.";
    Renamenx => "renamenx", 3, [WRITE FAST], TWO, Generic, "1.0.0", "Renames a key only when the target key name doesn't exist.";
    Keys => "keys", 2, [READONLY DANGEROUS ALL_SHARDS], NONE, Generic, "1.0.0", "Returns all key names that match a pattern.";
    Scan => "scan", -2, [READONLY], NONE, Generic, "2.8.0", "Iterates over the key names in the database.";
    Randomkey => "randomkey", 1, [READONLY ALL_SHARDS], NONE, Generic, "1.0.0", "Returns a random key name from the database.";
    Touch => "touch", -2, [READONLY FAST MULTI_SHARD], ALL, Generic, "3.2.1", "Returns the number of existing keys out of those specified after updating the time they were last accessed.";

    // expiry
    Expire => "expire", -3, [WRITE FAST], ONE, Generic, "1.0.0", "Sets the expiration time of a key in seconds.";
    Pexpire => "pexpire", -3, [WRITE FAST], ONE, Generic, "2.6.0", "Sets the expiration time of a key in milliseconds.";
    Expireat => "expireat", -3, [WRITE FAST], ONE, Generic, "1.2.0", "Sets the expiration time of a key to a Unix timestamp.";
    Pexpireat => "pexpireat", -3, [WRITE FAST], ONE, Generic, "2.6.0", "Sets the expiration time of a key to a Unix milliseconds timestamp.";
    Ttl => "ttl", 2, [READONLY FAST], ONE, Generic, "1.0.0", "Returns the expiration time in seconds of a key.";
    Pttl => "pttl", 2, [READONLY FAST], ONE, Generic, "2.6.0", "Returns the expiration time in milliseconds of a key.";
    Persist => "persist", 2, [WRITE FAST], ONE, Generic, "2.2.0", "Removes the expiration time of a key.";
    Expiretime => "expiretime", 2, [READONLY FAST], ONE, Generic, "7.0.0", "Returns the expiration time of a key as a Unix timestamp.";
    Pexpiretime => "pexpiretime", 2, [READONLY FAST], ONE, Generic, "7.0.0", "Returns the expiration time of a key as a Unix milliseconds timestamp.";

    // transactions (the connection runs them: see the server's `commands::transaction`)
    Multi => "multi", 1, [NOSCRIPT LOADING STALE FAST ALLOW_BUSY], NONE, Transactions, "1.2.0", "Starts a transaction.";
    Exec => "exec", 1, [NOSCRIPT LOADING STALE], NONE, Transactions, "1.2.0", "Executes all commands in a transaction.";
    Discard => "discard", 1, [NOSCRIPT LOADING STALE FAST ALLOW_BUSY], NONE, Transactions, "2.0.0", "Discards a transaction.";
    Watch => "watch", -2, [NOSCRIPT LOADING STALE FAST ALLOW_BUSY], ALL, Transactions, "2.2.0", "Monitors changes to keys to determine the execution of a transaction.";
    Unwatch => "unwatch", 1, [NOSCRIPT LOADING STALE FAST ALLOW_BUSY], NONE, Transactions, "2.2.0", "Forgets about watched keys of a transaction.";

    // pub/sub (not through Raft: messages are fire-and-forget, see the server's `pubsub`)
    Subscribe => "subscribe", -2, [PUBSUB NOSCRIPT LOADING STALE], NONE, Pubsub, "2.0.0", "Listens for messages published to channels.";
    Unsubscribe => "unsubscribe", -1, [PUBSUB NOSCRIPT LOADING STALE], NONE, Pubsub, "2.0.0", "Stops listening to messages posted to channels.";
    Psubscribe => "psubscribe", -2, [PUBSUB NOSCRIPT LOADING STALE], NONE, Pubsub, "2.0.0", "Listens for messages published to channels that match one or more patterns.";
    Punsubscribe => "punsubscribe", -1, [PUBSUB NOSCRIPT LOADING STALE], NONE, Pubsub, "2.0.0", "Stops listening to messages published to channels that match one or more patterns.";
    Publish => "publish", 3, [PUBSUB LOADING STALE FAST], NONE, Pubsub, "2.0.0", "Posts a message to a channel.";
    Pubsub => "pubsub", -2, [], NONE, Pubsub, "2.8.0", "A container for Pub/Sub commands.";
    PubsubChannels => "pubsub|channels", -2, [PUBSUB LOADING STALE], NONE, Pubsub, "2.8.0", "Returns the active channels.";
    PubsubNumsub => "pubsub|numsub", -2, [PUBSUB LOADING STALE], NONE, Pubsub, "2.8.0", "Returns a count of subscribers to channels.";
    PubsubNumpat => "pubsub|numpat", 2, [PUBSUB LOADING STALE], NONE, Pubsub, "2.8.0", "Returns a count of unique pattern subscriptions.";
    PubsubShardchannels => "pubsub|shardchannels", -2, [PUBSUB LOADING STALE], NONE, Pubsub, "7.0.0", "Returns the active shard channels.";
    PubsubShardnumsub => "pubsub|shardnumsub", -2, [PUBSUB LOADING STALE], NONE, Pubsub, "7.0.0", "Returns the count of subscribers of shard channels.";
    PubsubHelp => "pubsub|help", 2, [LOADING STALE], NONE, Pubsub, "6.2.0", "Returns helpful text about subcommands.";
    // Shard channels are keys for routing (their slot picks the node), never for data.
    Ssubscribe => "ssubscribe", -2, [PUBSUB NOSCRIPT LOADING STALE], ALL, Pubsub, "7.0.0", "Listens for messages published to shard channels.";
    Sunsubscribe => "sunsubscribe", -1, [PUBSUB NOSCRIPT LOADING STALE], ALL, Pubsub, "7.0.0", "Stops listening to messages posted to shard channels.";
    Spublish => "spublish", 3, [PUBSUB LOADING STALE FAST], ONE, Pubsub, "7.0.0", "Post a message to a shard channel";
    // hashes
    Hset => "hset", -4, [WRITE DENYOOM FAST], ONE, Hash, "2.0.0", "Creates or modifies the value of a field in a hash.";
    Hsetnx => "hsetnx", 4, [WRITE DENYOOM FAST], ONE, Hash, "2.0.0", "Sets the value of a field in a hash only when the field doesn't exist.";
    Hget => "hget", 3, [READONLY FAST], ONE, Hash, "2.0.0", "Returns the value of a field in a hash.";
    Hmget => "hmget", -3, [READONLY FAST], ONE, Hash, "2.0.0", "Returns the values of all fields in a hash.";
    Hmset => "hmset", -4, [WRITE DENYOOM FAST], ONE, Hash, "2.0.0", "Sets the values of multiple fields.";
    Hdel => "hdel", -3, [WRITE FAST], ONE, Hash, "2.0.0", "Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain.";
    Hlen => "hlen", 2, [READONLY FAST], ONE, Hash, "2.0.0", "Returns the number of fields in a hash.";
    Hstrlen => "hstrlen", 3, [READONLY FAST], ONE, Hash, "3.2.0", "Returns the length of the value of a field.";
    Hexists => "hexists", 3, [READONLY FAST], ONE, Hash, "2.0.0", "Determines whether a field exists in a hash.";
    Hkeys => "hkeys", 2, [READONLY], ONE, Hash, "2.0.0", "Returns all fields in a hash.";
    Hvals => "hvals", 2, [READONLY], ONE, Hash, "2.0.0", "Returns all values in a hash.";
    Hgetall => "hgetall", 2, [READONLY], ONE, Hash, "2.0.0", "Returns all fields and values in a hash.";
    Hincrby => "hincrby", 4, [WRITE DENYOOM FAST], ONE, Hash, "2.0.0", "Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist.";
    Hincrbyfloat => "hincrbyfloat", 4, [WRITE DENYOOM FAST], ONE, Hash, "2.6.0", "Increments the floating point value of a field by a number. Uses 0 as initial value if the field doesn't exist.";
    Hrandfield => "hrandfield", -2, [READONLY], ONE, Hash, "6.2.0", "Returns one or more random fields from a hash.";
    Hscan => "hscan", -3, [READONLY], ONE, Hash, "2.8.0", "Iterates over fields and values of a hash.";

    // lists
    Lpush => "lpush", -3, [WRITE DENYOOM FAST], ONE, List, "1.0.0", "Prepends one or more elements to a list. Creates the key if it doesn't exist.";
    Rpush => "rpush", -3, [WRITE DENYOOM FAST], ONE, List, "1.0.0", "Appends one or more elements to a list. Creates the key if it doesn't exist.";
    Lpushx => "lpushx", -3, [WRITE DENYOOM FAST], ONE, List, "2.2.0", "Prepends one or more elements to a list only when the list exists.";
    Rpushx => "rpushx", -3, [WRITE DENYOOM FAST], ONE, List, "2.2.0", "Appends an element to a list only when the list exists.";
    Lpop => "lpop", -2, [WRITE FAST], ONE, List, "1.0.0", "Returns the first elements in a list after removing it. Deletes the list if the last element was popped.";
    Rpop => "rpop", -2, [WRITE FAST], ONE, List, "1.0.0", "Returns and removes the last elements of a list. Deletes the list if the last element was popped.";
    Llen => "llen", 2, [READONLY FAST], ONE, List, "1.0.0", "Returns the length of a list.";
    Lrange => "lrange", 4, [READONLY], ONE, List, "1.0.0", "Returns a range of elements from a list.";
    Lindex => "lindex", 3, [READONLY], ONE, List, "1.0.0", "Returns an element from a list by its index.";
    Lset => "lset", 4, [WRITE DENYOOM], ONE, List, "1.0.0", "Sets the value of an element in a list by its index.";
    Linsert => "linsert", 5, [WRITE DENYOOM], ONE, List, "2.2.0", "Inserts an element before or after another element in a list.";
    Lrem => "lrem", 4, [WRITE], ONE, List, "1.0.0", "Removes elements from a list. Deletes the list if the last element was removed.";
    Ltrim => "ltrim", 4, [WRITE], ONE, List, "1.0.0", "Removes elements from both ends a list. Deletes the list if all elements were trimmed.";
    Lpos => "lpos", -3, [READONLY], ONE, List, "6.0.6", "Returns the index of matching elements in a list.";
    Lmove => "lmove", 5, [WRITE DENYOOM], TWO, List, "6.2.0", "Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved.";
    Rpoplpush => "rpoplpush", 3, [WRITE DENYOOM], TWO, List, "1.2.0", "Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped.";
    Lmpop => "lmpop", -4, [WRITE MOVABLEKEYS], NUMKEYS_1, List, "7.0.0", "Returns multiple elements from a list after removing them. Deletes the list if the last element was popped.";
    // blocking (they wait on the shard's leader: see the server's `blocking`)
    Blpop => "blpop", -3, [WRITE NOSCRIPT BLOCKING], ALL_BUT_LAST, List, "2.0.0", "Removes and returns the first element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.";
    Brpop => "brpop", -3, [WRITE NOSCRIPT BLOCKING], ALL_BUT_LAST, List, "2.0.0", "Removes and returns the last element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.";
    Brpoplpush => "brpoplpush", 4, [WRITE DENYOOM NOSCRIPT BLOCKING], TWO, List, "2.2.0", "Pops an element from a list, pushes it to another list and returns it. Block until an element is available otherwise. Deletes the list if the last element was popped.";
    Blmove => "blmove", 6, [WRITE DENYOOM NOSCRIPT BLOCKING], TWO, List, "6.2.0", "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise. Deletes the list if the last element was moved.";
    Blmpop => "blmpop", -5, [WRITE BLOCKING MOVABLEKEYS], NUMKEYS_2, List, "7.0.0", "Pops the first element from one of multiple lists. Blocks until an element is available otherwise. Deletes the list if the last element was popped.";

    // sets
    Sadd => "sadd", -3, [WRITE DENYOOM FAST], ONE, Set, "1.0.0", "Adds one or more members to a set. Creates the key if it doesn't exist.";
    Srem => "srem", -3, [WRITE FAST], ONE, Set, "1.0.0", "Removes one or more members from a set. Deletes the set if the last member was removed.";
    Smembers => "smembers", 2, [READONLY], ONE, Set, "1.0.0", "Returns all members of a set.";
    Sismember => "sismember", 3, [READONLY FAST], ONE, Set, "1.0.0", "Determines whether a member belongs to a set.";
    Smismember => "smismember", -3, [READONLY FAST], ONE, Set, "6.2.0", "Determines whether multiple members belong to a set.";
    Scard => "scard", 2, [READONLY FAST], ONE, Set, "1.0.0", "Returns the number of members in a set.";
    Spop => "spop", -2, [WRITE FAST BUILT_FROM_DATA], ONE, Set, "1.0.0", "Returns one or more random members from a set after removing them. Deletes the set if the last member was popped.";
    Srandmember => "srandmember", -2, [READONLY], ONE, Set, "1.0.0", "Get one or multiple random members from a set";
    Smove => "smove", 4, [WRITE FAST], TWO, Set, "1.0.0", "Moves a member from one set to another.";
    Sinter => "sinter", -2, [READONLY], ALL, Set, "1.0.0", "Returns the intersect of multiple sets.";
    Sintercard => "sintercard", -3, [READONLY MOVABLEKEYS], NUMKEYS_1, Set, "7.0.0", "Returns the number of members of the intersect of multiple sets.";
    Sunion => "sunion", -2, [READONLY], ALL, Set, "1.0.0", "Returns the union of multiple sets.";
    Sdiff => "sdiff", -2, [READONLY], ALL, Set, "1.0.0", "Returns the difference of multiple sets.";
    Sinterstore => "sinterstore", -3, [WRITE DENYOOM], ALL, Set, "1.0.0", "Stores the intersect of multiple sets in a key.";
    Sunionstore => "sunionstore", -3, [WRITE DENYOOM], ALL, Set, "1.0.0", "Stores the union of multiple sets in a key.";
    Sdiffstore => "sdiffstore", -3, [WRITE DENYOOM], ALL, Set, "1.0.0", "Stores the difference of multiple sets in a key.";
    Sscan => "sscan", -3, [READONLY], ONE, Set, "2.8.0", "Iterates over members of a set.";

    // sorted sets
    Zadd => "zadd", -4, [WRITE DENYOOM FAST], ONE, SortedSet, "1.2.0", "Adds one or more members to a sorted set, or updates their scores. Creates the key if it doesn't exist.";
    Zincrby => "zincrby", 4, [WRITE DENYOOM FAST], ONE, SortedSet, "1.2.0", "Increments the score of a member in a sorted set.";
    Zrem => "zrem", -3, [WRITE FAST], ONE, SortedSet, "1.2.0", "Removes one or more members from a sorted set. Deletes the sorted set if all members were removed.";
    Zcard => "zcard", 2, [READONLY FAST], ONE, SortedSet, "1.2.0", "Returns the number of members in a sorted set.";
    Zscore => "zscore", 3, [READONLY FAST], ONE, SortedSet, "1.2.0", "Returns the score of a member in a sorted set.";
    Zmscore => "zmscore", -3, [READONLY FAST], ONE, SortedSet, "6.2.0", "Returns the score of one or more members in a sorted set.";
    Zrank => "zrank", 3, [READONLY FAST], ONE, SortedSet, "2.0.0", "Returns the index of a member in a sorted set ordered by ascending scores.";
    Zrevrank => "zrevrank", 3, [READONLY FAST], ONE, SortedSet, "2.0.0", "Returns the index of a member in a sorted set ordered by descending scores.";
    Zcount => "zcount", 4, [READONLY FAST], ONE, SortedSet, "2.0.0", "Returns the count of members in a sorted set that have scores within a range.";
    Zlexcount => "zlexcount", 4, [READONLY FAST], ONE, SortedSet, "2.8.9", "Returns the number of members in a sorted set within a lexicographical range.";
    Zrange => "zrange", -4, [READONLY], ONE, SortedSet, "1.2.0", "Returns members in a sorted set within a range of indexes.";
    Zrangestore => "zrangestore", -5, [WRITE DENYOOM], TWO, SortedSet, "6.2.0", "Stores a range of members from sorted set in a key.";
    Zrevrange => "zrevrange", -4, [READONLY], ONE, SortedSet, "1.2.0", "Returns members in a sorted set within a range of indexes in reverse order.";
    Zrangebyscore => "zrangebyscore", -4, [READONLY], ONE, SortedSet, "1.0.5", "Returns members in a sorted set within a range of scores.";
    Zrevrangebyscore => "zrevrangebyscore", -4, [READONLY], ONE, SortedSet, "2.2.0", "Returns members in a sorted set within a range of scores in reverse order.";
    Zrangebylex => "zrangebylex", -4, [READONLY], ONE, SortedSet, "2.8.9", "Returns members in a sorted set within a lexicographical range.";
    Zrevrangebylex => "zrevrangebylex", -4, [READONLY], ONE, SortedSet, "2.8.9", "Returns members in a sorted set within a lexicographical range in reverse order.";
    Zpopmin => "zpopmin", -2, [WRITE FAST], ONE, SortedSet, "5.0.0", "Returns the lowest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.";
    Zpopmax => "zpopmax", -2, [WRITE FAST], ONE, SortedSet, "5.0.0", "Returns the highest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.";
    Zmpop => "zmpop", -4, [WRITE MOVABLEKEYS], NUMKEYS_1, SortedSet, "7.0.0", "Returns the highest- or lowest-scoring members from one or more sorted sets after removing them. Deletes the sorted set if the last member was popped.";
    Bzpopmin => "bzpopmin", -3, [WRITE NOSCRIPT FAST BLOCKING], ALL_BUT_LAST, SortedSet, "5.0.0", "Removes and returns the member with the lowest score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.";
    Bzpopmax => "bzpopmax", -3, [WRITE NOSCRIPT FAST BLOCKING], ALL_BUT_LAST, SortedSet, "5.0.0", "Removes and returns the member with the highest score from one or more sorted sets. Blocks until a member available otherwise.  Deletes the sorted set if the last element was popped.";
    Bzmpop => "bzmpop", -5, [WRITE BLOCKING MOVABLEKEYS], NUMKEYS_2, SortedSet, "7.0.0", "Removes and returns a member by score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.";
    Zrandmember => "zrandmember", -2, [READONLY], ONE, SortedSet, "6.2.0", "Returns one or more random members from a sorted set.";
    Zunionstore => "zunionstore", -4, [WRITE DENYOOM MOVABLEKEYS], DEST_NUMKEYS_2, SortedSet, "2.0.0", "Stores the union of multiple sorted sets in a key.";
    Zinterstore => "zinterstore", -4, [WRITE DENYOOM MOVABLEKEYS], DEST_NUMKEYS_2, SortedSet, "2.0.0", "Stores the intersect of multiple sorted sets in a key.";
    Zdiffstore => "zdiffstore", -4, [WRITE DENYOOM MOVABLEKEYS], DEST_NUMKEYS_2, SortedSet, "6.2.0", "Stores the difference of multiple sorted sets in a key.";
    Zunion => "zunion", -3, [READONLY MOVABLEKEYS], NUMKEYS_1, SortedSet, "6.2.0", "Returns the union of multiple sorted sets.";
    Zinter => "zinter", -3, [READONLY MOVABLEKEYS], NUMKEYS_1, SortedSet, "6.2.0", "Returns the intersect of multiple sorted sets.";
    Zdiff => "zdiff", -3, [READONLY MOVABLEKEYS], NUMKEYS_1, SortedSet, "6.2.0", "Returns the difference between multiple sorted sets.";
    Zremrangebyrank => "zremrangebyrank", 4, [WRITE], ONE, SortedSet, "2.0.0", "Removes members in a sorted set within a range of indexes. Deletes the sorted set if all members were removed.";
    Zremrangebyscore => "zremrangebyscore", 4, [WRITE], ONE, SortedSet, "1.2.0", "Removes members in a sorted set within a range of scores. Deletes the sorted set if all members were removed.";
    Zremrangebylex => "zremrangebylex", 4, [WRITE], ONE, SortedSet, "2.8.9", "Removes members in a sorted set within a lexicographical range. Deletes the sorted set if all members were removed.";
    Zscan => "zscan", -3, [READONLY], ONE, SortedSet, "2.8.0", "Iterates over members and scores of a sorted set.";

    // keys on all types
    Object => "object", -2, [], NONE, Generic, "2.2.3", "A container for object introspection commands.";
    ObjectEncoding => "object|encoding", 3, [READONLY], SECOND, Generic, "2.2.3", "Returns the internal encoding of a Redis object.";
    ObjectFreq => "object|freq", 3, [READONLY], SECOND, Generic, "4.0.0", "Returns the logarithmic access frequency counter of a Redis object.";
    ObjectIdletime => "object|idletime", 3, [READONLY], SECOND, Generic, "2.2.3", "Returns the time since the last access to a Redis object.";
    ObjectRefcount => "object|refcount", 3, [READONLY], SECOND, Generic, "2.2.3", "Returns the reference count of a value of a key.";
    ObjectHelp => "object|help", 2, [LOADING STALE], NONE, Generic, "6.2.0", "Returns helpful text about the different subcommands.";
    Copy => "copy", -3, [WRITE DENYOOM], TWO, Generic, "6.2.0", "Copies the value of a key to a new key.";
    Dump => "dump", 2, [READONLY], ONE, Generic, "2.6.0", "Returns a serialized representation of the value stored at a key.";
    Restore => "restore", -4, [WRITE DENYOOM DANGEROUS], ONE, Generic, "2.6.0", "Creates a key from the serialized representation of a value.";
    Sort => "sort", -2, [WRITE DENYOOM MOVABLEKEYS DANGEROUS], SORT, Generic, "1.0.0", "Sorts the elements in a list, a set, or a sorted set, optionally storing the result.";
    SortRo => "sort_ro", -2, [READONLY MOVABLEKEYS DANGEROUS], ONE, Generic, "7.0.0", "Returns the sorted elements of a list, a set, or a sorted set.";
}

/// Where `SORT`'s `STORE` destination is, as Redis's `sortGetKeys` finds it: options are
/// skipped with their arguments (`LIMIT` 2, `GET` and `BY` 1), and the last `STORE` wins.
fn sort_store_position(args: &[Bytes]) -> Option<usize> {
    let mut found = None;
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        if a.eq_ignore_ascii_case(b"limit") {
            i += 2;
        } else if a.eq_ignore_ascii_case(b"get") || a.eq_ignore_ascii_case(b"by") {
            i += 1;
        } else if a.eq_ignore_ascii_case(b"store") && i + 1 < args.len() {
            found = Some(i + 1);
        }
        i += 1;
    }
    found
}

/// Why a request does not name a command it can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// `ERR unknown command 'x', with args beginning with: ...`
    UnknownCommand,
    /// `ERR unknown subcommand 'x'. Try CONFIG HELP.`
    UnknownSubcommand,
    /// `ERR wrong number of arguments for 'x' command`
    WrongArity,
}

/// Indexed by `CommandId`: computed once, because lookup asks for every request.
static IS_CONTAINER: LazyLock<Vec<bool>> = LazyLock::new(|| {
    COMMANDS
        .iter()
        .map(|c| !c.is_subcommand() && c.subcommands().next().is_some())
        .collect()
});

/// Looked up once per request, so it uses a fast hash rather than SipHash.
static BY_NAME: LazyLock<HashMap<&'static str, &'static CommandSpec, foldhash::fast::FixedState>> =
    LazyLock::new(|| COMMANDS.iter().map(|c| (c.name, c)).collect());

/// A command's arguments from its words, as a client sends them (`args(&["SET", "k", "v"])`):
/// for tests and tools that build requests by hand.
pub fn args(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

impl CommandSpec {
    /// Finds a command or subcommand by its table name (`get`, `config|get`), case-insensitively.
    pub fn by_name(name: &str) -> Option<&'static CommandSpec> {
        BY_NAME.get(name.to_ascii_lowercase().as_str()).copied()
    }

    /// The spec for `id`.
    pub fn of(id: CommandId) -> &'static CommandSpec {
        &COMMANDS[id as usize]
    }

    /// Resolves a request's arguments to the command (or subcommand) it runs, checking arity.
    pub fn lookup(args: &[Bytes]) -> Result<&'static CommandSpec, LookupError> {
        let name = args.first().ok_or(LookupError::UnknownCommand)?;
        let spec = lookup_name(name, None).ok_or(LookupError::UnknownCommand)?;
        if spec.is_container() {
            if args.len() < 2 {
                // `COMMAND` alone is a command of its own; `CONFIG` alone is an arity error.
                return spec
                    .check_arity(args.len())
                    .then_some(spec)
                    .ok_or(LookupError::WrongArity);
            }
            let sub =
                lookup_name(&args[1], Some(spec.name)).ok_or(LookupError::UnknownSubcommand)?;
            return sub
                .check_arity(args.len())
                .then_some(sub)
                .ok_or(LookupError::WrongArity);
        }
        spec.check_arity(args.len())
            .then_some(spec)
            .ok_or(LookupError::WrongArity)
    }

    /// True when `argc` (arguments including the name) fits the arity.
    pub fn check_arity(&self, argc: usize) -> bool {
        let arity = self.arity.unsigned_abs() as usize;
        if self.arity >= 0 {
            argc == arity
        } else {
            argc >= arity
        }
    }

    /// A command whose real work is done by subcommands (`CONFIG`, `CLIENT`).
    pub fn is_container(&self) -> bool {
        IS_CONTAINER[self.id as usize]
    }

    pub fn is_subcommand(&self) -> bool {
        self.name.contains('|')
    }

    /// The subcommands of a container, in table order.
    pub fn subcommands(&self) -> impl Iterator<Item = &'static CommandSpec> + '_ {
        COMMANDS.iter().filter(move |c| {
            c.name
                .split_once('|')
                .is_some_and(|(parent, _)| parent == self.name)
        })
    }

    /// The name users type: `CONFIG GET` for `config|get`, upper case.
    pub fn display_name(&self) -> String {
        self.name.replace('|', " ").to_ascii_uppercase()
    }

    /// The name in errors: `config|get` is shown as `config|get`, as Redis does.
    pub fn full_name(&self) -> &'static str {
        self.name
    }

    /// The arguments that are keys, by the table's key specification.
    pub fn key_indexes(&self, argc: usize) -> impl Iterator<Item = usize> {
        let KeySpec {
            first, last, step, ..
        } = self.keys;
        let (first, step) = (first.max(0) as usize, step.max(1) as usize);
        let last = if last < 0 {
            argc as i64 + last as i64
        } else {
            last as i64
        };
        let last = last.min(argc as i64 - 1);
        let range = if first == 0 || last < first as i64 {
            0..0
        } else {
            first..(last as usize + 1)
        };
        range.step_by(step)
    }

    /// The positions of the keys in `args` (the whole request, name first): the table's
    /// range, then the keys a `numkeys` argument counts (none if it is not a valid count).
    pub fn key_positions(&self, args: &[Bytes]) -> impl Iterator<Item = usize> {
        let at = self.keys.numkeys.max(0) as usize;
        let counted = match args.get(at) {
            Some(n) if at > 0 => std::str::from_utf8(n)
                .ok()
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n < args.len() - at)
                .unwrap_or(0),
            _ => 0,
        };
        let store = if self.keys.sort_store {
            sort_store_position(args)
        } else {
            None
        };
        self.key_indexes(args.len())
            .chain(at + 1..at + 1 + counted)
            .chain(store)
    }

    /// The keys among `args` (the whole request, name first).
    pub fn keys<'a>(&self, args: &'a [Bytes]) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.key_positions(args).map(move |i| &args[i])
    }

    /// ACL categories as Redis shows them: derived from flags and the group.
    pub fn acl_categories(&self) -> Vec<&'static str> {
        let mut cats = Vec::new();
        if let Some(c) = self.group.acl_category() {
            cats.push(c);
        }
        if self.flags.contains(Flags::WRITE) {
            cats.push("@write");
        }
        if self.flags.contains(Flags::READONLY) {
            cats.push("@read");
        }
        if self.flags.contains(Flags::ADMIN) {
            cats.push("@admin");
        }
        if self.flags.contains(Flags::DANGEROUS) || self.flags.contains(Flags::ADMIN) {
            cats.push("@dangerous");
        }
        if self.flags.contains(Flags::BLOCKING) {
            cats.push("@blocking");
        }
        cats.push(if self.flags.contains(Flags::FAST) {
            "@fast"
        } else {
            "@slow"
        });
        cats
    }
}

/// Looks `name` up case-insensitively without allocating for ordinary command names.
fn lookup_name(name: &[u8], parent: Option<&str>) -> Option<&'static CommandSpec> {
    let mut buf = [0u8; 64];
    let prefix = parent.map_or(0, |p| p.len() + 1);
    if prefix + name.len() > buf.len() {
        return None;
    }
    if let Some(p) = parent {
        buf[..p.len()].copy_from_slice(p.as_bytes());
        buf[p.len()] = b'|';
    }
    for (dst, src) in buf[prefix..].iter_mut().zip(name) {
        *dst = src.to_ascii_lowercase();
    }
    let full = std::str::from_utf8(&buf[..prefix + name.len()]).ok()?;
    if parent.is_none() && full.contains('|') {
        return None;
    }
    BY_NAME.get(full).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_index_the_table() {
        for (i, spec) in COMMANDS.iter().enumerate() {
            assert_eq!(spec.id as usize, i, "{}", spec.name);
            assert_eq!(CommandSpec::of(spec.id).name, spec.name);
        }
    }

    #[test]
    fn names_are_unique_lowercase_and_subcommands_have_parents() {
        let mut seen = std::collections::HashSet::new();
        for spec in COMMANDS {
            assert!(seen.insert(spec.name), "duplicate {}", spec.name);
            assert_eq!(spec.name, spec.name.to_ascii_lowercase());
            if let Some((parent, _)) = spec.name.split_once('|') {
                assert!(CommandSpec::by_name(parent).is_some_and(|p| p.is_container()));
            }
            assert!(
                spec.flags.contains(Flags::WRITE) as u8
                    + spec.flags.contains(Flags::READONLY) as u8
                    <= 1
            );
        }
    }

    #[test]
    fn lookup_checks_arity_and_subcommands() {
        assert_eq!(
            CommandSpec::lookup(&args(&["GeT", "k"])).unwrap().id,
            CommandId::Get
        );
        assert_eq!(
            CommandSpec::lookup(&args(&["get"])).unwrap_err(),
            LookupError::WrongArity
        );
        assert_eq!(
            CommandSpec::lookup(&args(&["nope"])).unwrap_err(),
            LookupError::UnknownCommand
        );
        assert_eq!(
            CommandSpec::lookup(&args(&["config", "GET", "x"]))
                .unwrap()
                .id,
            CommandId::ConfigGet
        );
        assert_eq!(
            CommandSpec::lookup(&args(&["config", "bogus"])).unwrap_err(),
            LookupError::UnknownSubcommand
        );
        assert_eq!(
            CommandSpec::lookup(&args(&["config"])).unwrap_err(),
            LookupError::WrongArity
        );
        assert_eq!(
            CommandSpec::lookup(&args(&["config|get", "x"])).unwrap_err(),
            LookupError::UnknownCommand
        );
    }

    #[test]
    fn keys_follow_first_last_step() {
        let mset = CommandSpec::of(CommandId::Mset);
        let a = args(&["mset", "a", "1", "b", "2"]);
        assert_eq!(mset.keys(&a).collect::<Vec<_>>(), vec!["a", "b"]);
        let del = CommandSpec::of(CommandId::Del);
        assert_eq!(del.keys(&args(&["del", "x", "y", "z"])).count(), 3);
        let rename = CommandSpec::of(CommandId::Rename);
        assert_eq!(
            rename
                .keys(&args(&["rename", "x", "y"]))
                .collect::<Vec<_>>(),
            vec!["x", "y"]
        );
        assert_eq!(
            CommandSpec::of(CommandId::Ping)
                .keys(&args(&["ping", "x"]))
                .count(),
            0
        );
        let set = CommandSpec::of(CommandId::Set);
        assert_eq!(
            set.keys(&args(&["set", "k", "v", "EX", "10"]))
                .collect::<Vec<_>>(),
            vec!["k"]
        );
    }

    #[test]
    fn acl_categories_come_from_flags() {
        let get = CommandSpec::of(CommandId::Get);
        assert_eq!(get.acl_categories(), vec!["@string", "@read", "@fast"]);
        let flushall = CommandSpec::of(CommandId::Flushall);
        assert!(flushall.acl_categories().contains(&"@dangerous"));
    }
}
