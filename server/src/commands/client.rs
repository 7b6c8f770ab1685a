//! `CLIENT` subcommands.

use std::sync::Arc;

use shoal_protocol::{Frame, Version};

use super::args::{int, is, text};
use super::Ctx;
use crate::clients::ClientHandle;
use crate::error::{CommandError, CommandResult};

/// Redis's rule for client names and library attributes: printable, no spaces.
pub fn validate_name(name: &[u8]) -> Result<(), CommandError> {
    if name.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
        Ok(())
    } else {
        Err(CommandError::Err(
            "Client names cannot contain spaces, newlines or special characters.".into(),
        ))
    }
}

pub fn id(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(Frame::Integer(ctx.session.handle.id as i64))
}

pub fn setname(ctx: &mut Ctx<'_>) -> CommandResult {
    let name = ctx.arg(2);
    validate_name(name)?;
    ctx.session.handle.meta.lock().name = (!name.is_empty()).then(|| text(name));
    Ok(Frame::ok())
}

pub fn getname(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(Frame::bulk_or_null(
        ctx.session.handle.meta.lock().name.clone(),
    ))
}

/// Text replies are verbatim strings in RESP3, bulk strings in RESP2.
pub(super) fn text_reply(ctx: &Ctx<'_>, text: String) -> Frame {
    match ctx.session.resp {
        Version::Resp3 => Frame::Verbatim {
            format: *b"txt",
            text: text.into(),
        },
        Version::Resp2 => Frame::bulk(text),
    }
}

/// `CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...]`
pub fn list(ctx: &mut Ctx<'_>) -> CommandResult {
    let mut ids: Option<Vec<u64>> = None;
    let mut only_normal = true;
    let rest = &ctx.args[2..];
    match rest.first() {
        None => {}
        Some(opt) if is(opt, "type") && rest.len() == 2 => {
            let t = &rest[1];
            if !["normal", "master", "replica", "pubsub"]
                .iter()
                .any(|k| is(t, k))
            {
                return Err(CommandError::Err(format!(
                    "Unknown client type '{}'",
                    text(t)
                )));
            }
            only_normal = is(t, "normal");
        }
        Some(opt) if is(opt, "id") && rest.len() >= 2 => {
            let parsed: Result<Vec<u64>, _> = rest[1..]
                .iter()
                .map(|a| int(a).ok().filter(|&n| n > 0).map(|n| n as u64))
                .map(|o| o.ok_or(CommandError::Err("Invalid client ID".into())))
                .collect();
            ids = Some(parsed?);
        }
        Some(_) => return Err(CommandError::Syntax),
    }
    let mut out = String::new();
    if only_normal {
        for c in ctx.node.clients.all() {
            if ids.as_ref().is_none_or(|ids| ids.contains(&c.id)) {
                out.push_str(&c.info_line());
                out.push('\n');
            }
        }
    }
    Ok(text_reply(ctx, out))
}

pub fn info(ctx: &mut Ctx<'_>) -> CommandResult {
    let line = ctx.session.handle.info_line() + "\n";
    Ok(text_reply(ctx, line))
}

/// `CLIENT SETINFO LIB-NAME|LIB-VER value`
pub fn setinfo(ctx: &mut Ctx<'_>) -> CommandResult {
    let (attr, value) = (ctx.arg(2), ctx.arg(3));
    let is_name = is(attr, "lib-name");
    if !is_name && !is(attr, "lib-ver") {
        return Err(CommandError::Err(format!(
            "Unrecognized option '{}'",
            text(attr)
        )));
    }
    if !value.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
        return Err(CommandError::Err(format!(
            "{} cannot contain spaces, newlines or special characters.",
            text(attr).to_ascii_lowercase()
        )));
    }
    let value = (!value.is_empty()).then(|| text(value));
    let mut meta = ctx.session.handle.meta.lock();
    if is_name {
        meta.lib_name = value;
    } else {
        meta.lib_ver = value;
    }
    Ok(Frame::ok())
}

/// `CLIENT KILL ip:port` (old form) or `CLIENT KILL <filter> <value> ...` (new form: `ID`,
/// `ADDR`, `LADDR`, `USER`, `SKIPME yes|no`).
pub fn kill(ctx: &mut Ctx<'_>) -> CommandResult {
    let rest = &ctx.args[2..];
    if rest.len() == 1 {
        let addr = text(&rest[0]);
        let victim = ctx
            .node
            .clients
            .all()
            .into_iter()
            .find(|c| c.addr.to_string() == addr);
        return match victim {
            Some(c) => {
                kill_client(ctx, &c);
                Ok(Frame::ok())
            }
            None => Err(CommandError::Err("No such client".into())),
        };
    }
    if !rest.len().is_multiple_of(2) {
        return Err(CommandError::Syntax);
    }
    let (mut id, mut addr, mut laddr, mut user) = (None, None, None, None);
    let mut skip_me = true;
    for pair in rest.chunks_exact(2) {
        let (key, value) = (&pair[0], &pair[1]);
        if is(key, "id") {
            let n = int(value)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| CommandError::Err("client-id should be greater than 0".into()))?;
            id = Some(n as u64);
        } else if is(key, "addr") {
            addr = Some(text(value));
        } else if is(key, "laddr") {
            laddr = Some(text(value));
        } else if is(key, "user") {
            user = Some(text(value));
        } else if is(key, "skipme") {
            skip_me = if is(value, "yes") {
                true
            } else if is(value, "no") {
                false
            } else {
                return Err(CommandError::Syntax);
            };
        } else {
            return Err(CommandError::Syntax);
        }
    }
    let me = ctx.session.handle.id;
    let victims: Vec<Arc<ClientHandle>> = ctx
        .node
        .clients
        .all()
        .into_iter()
        .filter(|c| id.is_none_or(|id| c.id == id))
        .filter(|c| addr.as_ref().is_none_or(|a| c.addr.to_string() == *a))
        .filter(|c| laddr.as_ref().is_none_or(|a| c.laddr.to_string() == *a))
        .filter(|c| user.as_ref().is_none_or(|u| c.meta.lock().user == *u))
        .filter(|c| !(skip_me && c.id == me))
        .collect();
    for v in &victims {
        kill_client(ctx, v);
    }
    Ok(Frame::Integer(victims.len() as i64))
}

/// `CLIENT UNBLOCK client-id [TIMEOUT|ERROR]`: 1 if that client was blocked here.
pub fn unblock(ctx: &mut Ctx<'_>) -> CommandResult {
    if ctx.args.len() > 4 {
        return Err(CommandError::Err(
            "unknown subcommand or wrong number of arguments for 'unblock'. Try CLIENT HELP."
                .into(),
        ));
    }
    let error = match ctx.args.get(3) {
        None => false,
        Some(r) if is(r, "timeout") => false,
        Some(r) if is(r, "error") => true,
        Some(_) => {
            return Err(CommandError::Err(
                "CLIENT UNBLOCK reason should be TIMEOUT or ERROR".into(),
            ))
        }
    };
    let id = int(&ctx.args[2])?;
    let unblocked = ctx
        .node
        .clients
        .all()
        .into_iter()
        .find(|c| c.id as i64 == id)
        .is_some_and(|c| c.unblock(error));
    Ok(Frame::Integer(unblocked as i64))
}

fn kill_client(ctx: &mut Ctx<'_>, victim: &ClientHandle) {
    if victim.id == ctx.session.handle.id {
        // Killing yourself: the reply still goes out, then the connection closes.
        ctx.session.close_after_reply = true;
    } else {
        victim.kill.cancel();
    }
}

pub fn help(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(help_reply(
        ctx.spec.name,
        &[
            "ID",
            "    Return the ID of the current connection.",
            "INFO",
            "    Return information about the current client connection.",
            "KILL <ip:port>",
            "    Kill connection made from <ip:port>.",
            "KILL <option> <value> [<option> <value> [...]]",
            "    Kill connections. Options are: ID, ADDR, LADDR, USER, SKIPME (yes|no).",
            "LIST [TYPE <type>] [ID <id> [<id> ...]]",
            "    Return information about client connections.",
            "GETNAME",
            "    Return the name of the current connection.",
            "SETNAME <name>",
            "    Assign the name <name> to the current connection.",
            "SETINFO <LIB-NAME|LIB-VER> <value>",
            "    Set client library name or version.",
            "UNBLOCK <clientid> [TIMEOUT|ERROR]",
            "    Unblock the specified blocked client.",
        ],
    ))
}

/// The reply of a `... HELP` subcommand: Redis's header, the lines, and its footer.
pub fn help_reply(name: &str, lines: &[&str]) -> Frame {
    let parent = name.split('|').next().unwrap_or(name).to_ascii_uppercase();
    let mut out = vec![Frame::simple(format!(
        "{parent} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    ))];
    out.extend(lines.iter().map(|l| Frame::simple(*l)));
    out.push(Frame::simple("HELP"));
    out.push(Frame::simple("    Print this help."));
    Frame::Array(out)
}
