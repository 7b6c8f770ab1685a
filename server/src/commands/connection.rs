//! Connection commands: handshake, authentication, database selection, reset, quit.

use shoal_protocol::{Frame, Version};

use bytes::Bytes;

use super::acl::check_password;
use super::args::{db_index, int, is, text};
use super::client::validate_name;
use super::Ctx;
use crate::error::{CommandError, CommandResult};

/// The Redis version shoal answers as, for clients that gate features on it.
pub const REDIS_VERSION: &str = "7.2.4";

/// Authenticates the session as `user` if `password` is right (users: see `crate::acl`).
fn log_in(ctx: &mut Ctx<'_>, user: &[u8], password: &[u8]) -> Result<(), CommandError> {
    if !check_password(ctx, user, password) {
        tracing::warn!(client = ctx.session.handle.id, "AUTH failed");
        return Err(CommandError::WrongPass);
    }
    ctx.session.authenticated = true;
    ctx.session.user = Some(text(&Bytes::copy_from_slice(user)));
    Ok(())
}

/// `AUTH [username] password`
pub fn auth(ctx: &mut Ctx<'_>) -> CommandResult {
    let (user, password) = match &ctx.args[1..] {
        [password] => {
            if ctx.node.default_user_open() {
                return Err(CommandError::Err(
                    "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?".into(),
                ));
            }
            (&b"default"[..], password)
        }
        [user, password] => (&user[..], password),
        _ => return Err(CommandError::Syntax),
    };
    let (user, password) = (user.to_vec(), password.clone());
    log_in(ctx, &user, &password)?;
    Ok(Frame::ok())
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
pub fn hello(ctx: &mut Ctx<'_>) -> CommandResult {
    let mut version = ctx.session.resp;
    if let Some(v) = ctx.args.get(1) {
        let v = int(v).map_err(|_| {
            CommandError::Err("Protocol version is not an integer or out of range".into())
        })?;
        version = match v {
            2 => Version::Resp2,
            3 => Version::Resp3,
            _ => return Err(noproto()),
        };
    }
    let mut credentials = None;
    let mut name = None;
    let mut i = 2;
    while i < ctx.args.len() {
        let opt = &ctx.args[i];
        let left = ctx.args.len() - i - 1;
        if is(opt, "auth") && left >= 2 {
            credentials = Some((ctx.args[i + 1].clone(), ctx.args[i + 2].clone()));
            i += 3;
        } else if is(opt, "setname") && left >= 1 {
            name = Some(ctx.args[i + 1].clone());
            i += 2;
        } else {
            return Err(CommandError::Err(format!(
                "Syntax error in HELLO option '{}'",
                text(opt)
            )));
        }
    }
    if let Some((user, password)) = &credentials {
        log_in(ctx, user, password)?;
    }
    if !ctx.session.authenticated {
        return Err(noauth_hello());
    }
    if let Some(name) = name {
        validate_name(&name)?;
        ctx.session.handle.meta.lock().name = (!name.is_empty()).then(|| text(&name));
    }
    ctx.session.resp = version;
    ctx.session.handle.meta.lock().resp = version;
    Ok(Frame::Map(vec![
        (Frame::bulk("server"), Frame::bulk("redis")),
        (Frame::bulk("version"), Frame::bulk(REDIS_VERSION)),
        (Frame::bulk("proto"), Frame::Integer(version.number())),
        (
            Frame::bulk("id"),
            Frame::Integer(ctx.session.handle.id as i64),
        ),
        (Frame::bulk("mode"), Frame::bulk("standalone")),
        (Frame::bulk("role"), Frame::bulk("master")),
        (Frame::bulk("modules"), Frame::Array(Vec::new())),
    ]))
}

fn noproto() -> CommandError {
    CommandError::Raw("NOPROTO unsupported protocol version".into())
}

fn noauth_hello() -> CommandError {
    CommandError::Raw("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into())
}

pub fn select(ctx: &mut Ctx<'_>) -> CommandResult {
    db_index(ctx.arg(1))?;
    Ok(Frame::ok())
}

pub fn quit(ctx: &mut Ctx<'_>) -> CommandResult {
    ctx.session.close_after_reply = true;
    Ok(Frame::ok())
}

/// `RESET`: back to a fresh connection's state.
pub fn reset(ctx: &mut Ctx<'_>) -> CommandResult {
    ctx.session.resp = Version::Resp2;
    ctx.session.authenticated = ctx.node.default_user_open();
    ctx.session.user = Some(crate::acl::DEFAULT_USER.to_owned());
    let config = ctx.node.config.read();
    ctx.session.redirect = config.cluster_mode == "redirect";
    ctx.session.readonly = false;
    ctx.session.tx = super::transaction::TxState::default();
    ctx.session.pubsub.clear();
    drop(config);
    let mut meta = ctx.session.handle.meta.lock();
    meta.name = None;
    meta.resp = Version::Resp2;
    Ok(Frame::simple("RESET"))
}
