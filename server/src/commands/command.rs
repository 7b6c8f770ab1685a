//! `COMMAND` and its subcommands, generated from the command table.

use shoal_protocol::{CommandSpec, Flags, Frame, LookupError, COMMANDS};

use super::args::{is, text};
use super::client::help_reply;
use super::Ctx;
use crate::error::{CommandError, CommandResult};
use crate::glob::glob_match;

fn top_level() -> impl Iterator<Item = &'static CommandSpec> {
    COMMANDS.iter().filter(|c| !c.is_subcommand())
}

fn simple_set(items: impl IntoIterator<Item = &'static str>) -> Frame {
    Frame::Set(items.into_iter().map(Frame::simple).collect())
}

/// The 10-element description `COMMAND INFO` gives of one command (Redis 7 layout).
fn describe(spec: &CommandSpec) -> Frame {
    let keys = spec.keys;
    let key_specs = if keys.first == 0 {
        Vec::new()
    } else {
        let access = if spec.flags.contains(Flags::WRITE) {
            ["RW", "update"]
        } else {
            ["RO", "access"]
        };
        let lastkey = if keys.last < 0 {
            keys.last
        } else {
            keys.last - keys.first
        };
        vec![Frame::Map(vec![
            (Frame::bulk("flags"), simple_set(access)),
            (
                Frame::bulk("begin_search"),
                Frame::Map(vec![
                    (Frame::bulk("type"), Frame::bulk("index")),
                    (
                        Frame::bulk("spec"),
                        Frame::Map(vec![(
                            Frame::bulk("index"),
                            Frame::Integer(keys.first as i64),
                        )]),
                    ),
                ]),
            ),
            (
                Frame::bulk("find_keys"),
                Frame::Map(vec![
                    (Frame::bulk("type"), Frame::bulk("range")),
                    (
                        Frame::bulk("spec"),
                        Frame::Map(vec![
                            (Frame::bulk("lastkey"), Frame::Integer(lastkey as i64)),
                            (Frame::bulk("keystep"), Frame::Integer(keys.step as i64)),
                            (Frame::bulk("limit"), Frame::Integer(0)),
                        ]),
                    ),
                ]),
            ),
        ])]
    };
    Frame::Array(vec![
        Frame::bulk(spec.name),
        Frame::Integer(spec.arity as i64),
        simple_set(spec.flags.names()),
        Frame::Integer(keys.first as i64),
        Frame::Integer(keys.last as i64),
        Frame::Integer(keys.step as i64),
        simple_set(spec.acl_categories()),
        Frame::Array(Vec::new()),
        Frame::Array(key_specs),
        Frame::Array(spec.subcommands().map(describe).collect()),
    ])
}

/// The documentation map `COMMAND DOCS` gives of one command.
fn document(spec: &CommandSpec) -> Frame {
    let mut doc = vec![
        (Frame::bulk("summary"), Frame::bulk(spec.summary)),
        (Frame::bulk("since"), Frame::bulk(spec.since)),
        (Frame::bulk("group"), Frame::bulk(spec.group.name())),
    ];
    if spec.is_container() {
        doc.push((
            Frame::bulk("subcommands"),
            Frame::Map(
                spec.subcommands()
                    .map(|s| (Frame::bulk(s.name), document(s)))
                    .collect(),
            ),
        ));
    }
    Frame::Map(doc)
}

/// `COMMAND` with no subcommand: every command.
pub fn all() -> Frame {
    Frame::Array(top_level().map(describe).collect())
}

pub fn count(_ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(Frame::Integer(top_level().count() as i64))
}

/// Finds a command or subcommand by the name a user gives (`get`, `config|get`).
fn named(name: &[u8]) -> Option<&'static CommandSpec> {
    CommandSpec::by_name(std::str::from_utf8(name).ok()?)
}

pub fn info(ctx: &mut Ctx<'_>) -> CommandResult {
    if ctx.args.len() == 2 {
        return Ok(all());
    }
    Ok(Frame::Array(
        ctx.args[2..]
            .iter()
            // Redis answers an unknown name with a null bulk string (`$-1`), not a null array.
            .map(|n| named(n).map_or(Frame::Null, describe))
            .collect(),
    ))
}

pub fn docs(ctx: &mut Ctx<'_>) -> CommandResult {
    let specs: Vec<&CommandSpec> = if ctx.args.len() == 2 {
        top_level().collect()
    } else {
        ctx.args[2..].iter().filter_map(|n| named(n)).collect()
    };
    Ok(Frame::Map(
        specs
            .into_iter()
            .map(|s| (Frame::bulk(s.name), document(s)))
            .collect(),
    ))
}

/// `COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]`
pub fn list(ctx: &mut Ctx<'_>) -> CommandResult {
    let filter: Box<dyn Fn(&CommandSpec) -> bool> = match &ctx.args[2..] {
        [] => Box::new(|_| true),
        [by, kind, value] if is(by, "filterby") => {
            let value = value.clone();
            if is(kind, "module") {
                Box::new(|_| false)
            } else if is(kind, "aclcat") {
                let cat = format!("@{}", text(&value).to_ascii_lowercase());
                Box::new(move |s| s.acl_categories().contains(&cat.as_str()))
            } else if is(kind, "pattern") {
                Box::new(move |s| glob_match(&value, s.name.as_bytes(), true))
            } else {
                return Err(CommandError::Syntax);
            }
        }
        _ => return Err(CommandError::Syntax),
    };
    Ok(Frame::Array(
        COMMANDS
            .iter()
            .filter(|s| filter(s))
            .map(|s| Frame::bulk(s.name))
            .collect(),
    ))
}

/// `COMMAND GETKEYS command arg ...`: the keys the table says the command takes.
pub fn getkeys(ctx: &mut Ctx<'_>) -> CommandResult {
    let request = &ctx.args[2..];
    let spec = CommandSpec::lookup(request).map_err(|e| match e {
        LookupError::WrongArity => {
            CommandError::Err("Invalid number of arguments specified for command".into())
        }
        _ => CommandError::Err("Invalid command specified".into()),
    })?;
    let keys: Vec<Frame> = spec.keys(request).map(|k| Frame::Bulk(k.clone())).collect();
    if keys.is_empty() {
        return Err(CommandError::Err("The command has no key arguments".into()));
    }
    Ok(Frame::Array(keys))
}

pub fn help(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(help_reply(
        ctx.spec.name,
        &[
            "(no subcommand)",
            "    Return details about all commands.",
            "COUNT",
            "    Return the total number of commands in this server.",
            "LIST",
            "    Return a list of all commands in this server.",
            "INFO [<command-name> ...]",
            "    Return details about multiple commands.",
            "DOCS [<command-name> ...]",
            "    Return documentation details about multiple commands.",
            "GETKEYS <full-command>",
            "    Return the keys from a full command.",
        ],
    ))
}
