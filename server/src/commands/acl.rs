//! `ACL` and the permission check every request passes: users from the metadata group (so
//! cluster-wide), denials in the node's `ACL LOG`.

use std::sync::Arc;

use bytes::Bytes;
use shoal_protocol::{CommandId, CommandSpec, Flags, Frame};

use super::args::text;
use super::client::help_reply;
use super::Ctx;
use super::Session;
use crate::acl::{self, Denied, User, DEFAULT_USER};
use crate::cluster::meta::{encode, user_key};
use crate::cluster::service::run_on;
use crate::error::{CommandError, CommandResult};
use crate::node::Node;
use crate::rpc::META_GROUP;
use crate::types::sort;

/// Checks `spec` and its keys against the session's user; a refusal is logged in `ACL LOG`.
pub fn authorize(
    node: &Node,
    session: &Session,
    spec: &'static CommandSpec,
    args: &[Bytes],
) -> Result<(), Frame> {
    // As in Redis, commands that run before authentication (AUTH, HELLO, QUIT) are never denied.
    let Some(name) = session
        .user
        .as_deref()
        .filter(|_| !spec.flags.contains(Flags::NO_AUTH))
    else {
        return Ok(());
    };
    // The common case costs one lookup: `default` as `requirepass` made it may run anything.
    let topology = node.topology();
    let user = match topology.users.get(name) {
        Some(user) => user,
        None if name == DEFAULT_USER => return Ok(()),
        // Deleted while connected: nothing is allowed any more.
        None => &User::default(),
    };
    match user.check(spec, args) {
        Ok(()) if !user.all_keys && matches!(spec.id, CommandId::Sort | CommandId::SortRo) => {
            // Not an ACL denial in Redis either (no `ACL LOG` entry): SORT's own refusal.
            match sort::option_needing_every_key(args, spec.id == CommandId::SortRo) {
                Some(option) => Err(Frame::error(format!(
                    "ERR {option} option of SORT denied due to insufficient ACL permissions."
                ))),
                None => Ok(()),
            }
        }
        Ok(()) => Ok(()),
        Err(denied) => {
            let (reason, object, error) = match &denied {
                Denied::Command => (
                    "command",
                    spec.name.to_owned(),
                    format!(
                        "NOPERM this user has no permissions to run the '{}' command",
                        spec.name
                    ),
                ),
                Denied::Key(key) => (
                    "key",
                    key.clone(),
                    "NOPERM this user has no permissions to access one of the keys used as arguments"
                        .to_owned(),
                ),
            };
            node.acl_log
                .record(reason, &object, name, session.handle.info_line());
            node.stats.reject(spec.id);
            Err(CommandError::Raw(error).into())
        }
    }
}

/// Checks `user`'s `password` (a failure goes to `ACL LOG`).
pub fn check_password(ctx: &Ctx<'_>, user: &[u8], password: &[u8]) -> bool {
    let name = String::from_utf8_lossy(user);
    let ok = ctx
        .node
        .acl_user(&name)
        .is_some_and(|u| u.check_password(password));
    if !ok {
        ctx.node
            .acl_log
            .record("auth", "AUTH", &name, ctx.session.handle.info_line());
    }
    ok
}

/// `ACL SETUSER name rule...`: applies the rules to the user (a new one starts as Redis's:
/// off, no password, no keys, no commands) and records it in the metadata group.
pub async fn setuser(node: Arc<Node>, args: Vec<Bytes>) -> Frame {
    let name = text(&args[2]);
    if !acl::valid_user_name(&args[2]) {
        return CommandError::Err("Usernames can't contain spaces or null characters".into())
            .into();
    }
    let mut user = node
        .topology()
        .users
        .get(&name)
        .cloned()
        .unwrap_or_else(|| {
            if name == DEFAULT_USER {
                User::implicit_default(node.config.read().requirepass.as_deref())
            } else {
                User::default()
            }
        });
    for rule in &args[3..] {
        let rule = text(rule);
        if let Err(why) = user.apply(&rule) {
            return CommandError::Err(format!("Error in ACL SETUSER modifier '{rule}': {why}"))
                .into();
        }
    }
    let set = vec![
        Bytes::from_static(b"SET"),
        Bytes::from(user_key(&name)),
        encode(&user),
    ];
    settle(&node, run_on(&node, META_GROUP, set).await, Frame::ok())
}

/// `ACL DELUSER name...`: how many existed.
pub async fn deluser(node: Arc<Node>, args: Vec<Bytes>) -> Frame {
    let names: Vec<String> = args[2..].iter().map(text).collect();
    if names.iter().any(|n| n == DEFAULT_USER) {
        return CommandError::Err("The 'default' user cannot be removed".into()).into();
    }
    let mut del = vec![Bytes::from_static(b"DEL")];
    del.extend(names.iter().map(|n| Bytes::from(user_key(n))));
    let reply = run_on(&node, META_GROUP, del).await;
    let answer = reply.clone();
    settle(&node, reply, answer)
}

/// The metadata write's outcome: on success `answer` (after this node rereads group 0, so
/// its next command sees the change), else the error.
fn settle(node: &Node, reply: Frame, answer: Frame) -> Frame {
    if reply.is_error() {
        return reply;
    }
    node.refresh_topology();
    answer
}

/// Every user: `default` first (as `requirepass` made it, unless recorded), then group 0's.
fn all_users(node: &Node) -> Vec<(String, User)> {
    let topology = node.topology();
    let mut users: Vec<(String, User)> = Vec::new();
    if !topology.users.contains_key(DEFAULT_USER) {
        if let Some(u) = node.acl_user(DEFAULT_USER) {
            users.push((DEFAULT_USER.to_owned(), u));
        }
    }
    users.extend(topology.users.iter().map(|(n, u)| (n.clone(), u.clone())));
    users.sort_by(|a, b| a.0.cmp(&b.0));
    users
}

/// `ACL GETUSER name`
pub fn getuser(ctx: &mut Ctx<'_>) -> CommandResult {
    let Some(user) = ctx.node.acl_user(&text(ctx.arg(2))) else {
        return Ok(Frame::Null);
    };
    let strings = |items: Vec<String>| Frame::Array(items.into_iter().map(Frame::bulk).collect());
    Ok(Frame::Map(vec![
        (
            Frame::bulk("flags"),
            strings(user.flags().into_iter().map(str::to_owned).collect()),
        ),
        (
            Frame::bulk("passwords"),
            strings(user.passwords.iter().cloned().collect()),
        ),
        (Frame::bulk("commands"), Frame::bulk(user.commands_text())),
        (Frame::bulk("keys"), Frame::bulk(user.keys_text())),
        (Frame::bulk("channels"), Frame::bulk("")),
        (Frame::bulk("selectors"), Frame::Array(Vec::new())),
    ]))
}

/// `ACL LIST`
pub fn list(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(Frame::Array(
        all_users(ctx.node)
            .into_iter()
            .map(|(name, u)| Frame::bulk(format!("user {name} {}", u.describe())))
            .collect(),
    ))
}

/// `ACL USERS`
pub fn users(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(Frame::Array(
        all_users(ctx.node)
            .into_iter()
            .map(|(name, _)| Frame::bulk(name))
            .collect(),
    ))
}

/// `ACL WHOAMI`
pub fn whoami(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(Frame::bulk(
        ctx.session
            .user
            .as_deref()
            .unwrap_or(DEFAULT_USER)
            .to_owned(),
    ))
}

/// `ACL CAT [category]`
pub fn cat(ctx: &mut Ctx<'_>) -> CommandResult {
    match ctx.args.get(2) {
        None => Ok(Frame::Array(
            acl::categories().into_iter().map(Frame::bulk).collect(),
        )),
        Some(category) => match acl::commands_in(&text(category)) {
            Some(names) => Ok(Frame::Array(names.into_iter().map(Frame::bulk).collect())),
            None => Err(CommandError::Err(format!(
                "Unknown category '{}'",
                text(category)
            ))),
        },
    }
}

/// `ACL LOG [count | RESET]`
pub fn log(ctx: &mut Ctx<'_>) -> CommandResult {
    let limit = match ctx.args.get(2) {
        None => 10,
        Some(a) if text(a).eq_ignore_ascii_case("reset") => {
            ctx.node.acl_log.reset();
            return Ok(Frame::ok());
        }
        Some(a) => text(a)
            .parse::<usize>()
            .map_err(|_| CommandError::Err("value is out of range, must be positive".into()))?,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let entries = ctx.node.acl_log.entries(limit);
    Ok(Frame::Array(
        entries
            .iter()
            .map(|e| {
                let age = now.saturating_sub(e.created_ms) as f64 / 1000.0;
                Frame::Map(vec![
                    (Frame::bulk("count"), Frame::Integer(e.count as i64)),
                    (Frame::bulk("reason"), Frame::bulk(e.reason)),
                    (Frame::bulk("context"), Frame::bulk("toplevel")),
                    (Frame::bulk("object"), Frame::bulk(e.object.clone())),
                    (Frame::bulk("username"), Frame::bulk(e.username.clone())),
                    (Frame::bulk("age-seconds"), Frame::bulk(format!("{age:.3}"))),
                    (
                        Frame::bulk("client-info"),
                        Frame::bulk(e.client_info.clone()),
                    ),
                    (Frame::bulk("entry-id"), Frame::Integer(e.id as i64)),
                    (
                        Frame::bulk("timestamp-created"),
                        Frame::Integer(e.created_ms as i64),
                    ),
                    (
                        Frame::bulk("timestamp-last-updated"),
                        Frame::Integer(e.updated_ms as i64),
                    ),
                ])
            })
            .collect(),
    ))
}

pub fn help(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(help_reply(
        ctx.spec.name,
        &[
            "CAT [<category>]",
            "    List all commands that belong to <category>, or all command categories",
            "    when no category is specified.",
            "DELUSER <username> [<username> ...]",
            "    Delete a list of users.",
            "GETUSER <username>",
            "    Get the user's details.",
            "LIST",
            "    Show users details in config file format.",
            "LOG [<count> | RESET]",
            "    Show the ACL log entries.",
            "SETUSER <username> <attribute> [<attribute> ...]",
            "    Create or modify a user with the specified attributes.",
            "USERS",
            "    List all the registered usernames.",
            "WHOAMI",
            "    Return the current connection username.",
        ],
    ))
}
