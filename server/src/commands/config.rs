//! `CONFIG GET/SET/RESETSTAT`: the parameters users can see and those they can change live.

use shoal_protocol::Frame;

use super::args::text;
use super::client::help_reply;
use super::Ctx;
use crate::config::{parse_memory, Config};
use crate::error::{CommandError, CommandResult};
use crate::glob::glob_match;

type Getter = fn(&Config) -> String;
type Setter = fn(&mut Config, &str) -> Result<(), String>;

/// One parameter: its Redis name, how to read it, and how to change it (`None`: immutable).
struct Param {
    name: &'static str,
    get: Getter,
    set: Option<Setter>,
}

fn number<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| "argument couldn't be parsed into an integer".to_owned())
}

/// Every parameter `CONFIG GET` shows. Fixed values describe what shoal does (one database,
/// no RDB snapshots or AOF on this single-node path yet, no memory limit yet).
const PARAMS: &[Param] = &[
    Param {
        name: "port",
        get: |c| c.port.to_string(),
        set: None,
    },
    Param {
        name: "bind",
        get: |c| c.bind.clone(),
        set: None,
    },
    Param {
        name: "dir",
        get: |c| c.data_dir.display().to_string(),
        set: None,
    },
    Param {
        name: "requirepass",
        get: |c| c.requirepass.clone().unwrap_or_default(),
        set: Some(|c, v| {
            c.requirepass = (!v.is_empty()).then(|| v.to_owned());
            Ok(())
        }),
    },
    Param {
        name: "maxclients",
        get: |c| c.maxclients.to_string(),
        set: Some(|c, v| {
            c.maxclients = number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "timeout",
        get: |c| c.timeout.to_string(),
        set: Some(|c, v| {
            c.timeout = number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "proto-max-bulk-len",
        get: |c| c.proto_max_bulk_len.to_string(),
        set: Some(|c, v| {
            c.proto_max_bulk_len = parse_memory(v)?;
            Ok(())
        }),
    },
    Param {
        name: "client-query-buffer-limit",
        get: |c| c.client_query_buffer_limit.to_string(),
        set: Some(|c, v| {
            c.client_query_buffer_limit = parse_memory(v)?;
            Ok(())
        }),
    },
    Param {
        name: "save",
        get: |_| String::new(),
        set: None,
    },
    Param {
        name: "appendonly",
        get: |_| "no".into(),
        set: None,
    },
    Param {
        name: "databases",
        get: |_| "1".into(),
        set: None,
    },
    Param {
        name: "maxmemory",
        get: |c| c.maxmemory.to_string(),
        set: Some(|c, v| {
            c.maxmemory = parse_memory(v)?;
            Ok(())
        }),
    },
    Param {
        name: "maxmemory-policy",
        get: |c| c.maxmemory_policy.to_string(),
        set: Some(|c, v| {
            c.maxmemory_policy = v.parse()?;
            Ok(())
        }),
    },
    Param {
        name: "maxmemory-samples",
        get: |c| c.maxmemory_samples.to_string(),
        set: Some(|c, v| {
            c.maxmemory_samples = number::<u32>(v)?.clamp(1, 64);
            Ok(())
        }),
    },
    Param {
        name: "lfu-log-factor",
        get: |c| c.lfu_log_factor.to_string(),
        set: Some(|c, v| {
            c.lfu_log_factor = number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "lfu-decay-time",
        get: |c| c.lfu_decay_time.to_string(),
        set: Some(|c, v| {
            c.lfu_decay_time = number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "hz",
        get: |_| "10".into(),
        set: None,
    },
    Param {
        name: "cluster-enabled",
        get: |_| "no".into(),
        set: None,
    },
];

/// `CONFIG GET pattern [pattern ...]`
pub fn get(ctx: &mut Ctx<'_>) -> CommandResult {
    let config = ctx.node.config.read();
    let mut pairs = Vec::new();
    for p in PARAMS {
        let wanted = ctx.args[2..]
            .iter()
            .any(|pat| glob_match(pat, p.name.as_bytes(), true));
        if wanted {
            pairs.push((Frame::bulk(p.name), Frame::bulk((p.get)(&config))));
        }
    }
    Ok(Frame::Map(pairs))
}

/// `CONFIG SET parameter value [parameter value ...]`: all or nothing.
pub fn set(ctx: &mut Ctx<'_>) -> CommandResult {
    let rest = &ctx.args[2..];
    // An odd count past the arity check is Redis's plain syntax error, not an arity error.
    if !rest.len().is_multiple_of(2) {
        return Err(CommandError::Syntax);
    }
    let mut next = ctx.node.config.read().clone();
    for pair in rest.chunks_exact(2) {
        let name = text(&pair[0]).to_ascii_lowercase();
        let Some(param) = PARAMS.iter().find(|p| p.name == name) else {
            return Err(CommandError::Err(format!(
                "Unknown option or number of arguments for CONFIG SET - '{name}'"
            )));
        };
        let Some(setter) = param.set else {
            return Err(CommandError::Err(format!(
                "CONFIG SET failed (possibly related to argument '{name}') - can't set immutable config"
            )));
        };
        setter(&mut next, &text(&pair[1])).map_err(|why| {
            CommandError::Err(format!(
                "CONFIG SET failed (possibly related to argument '{name}') - {why}"
            ))
        })?;
    }
    *ctx.node.config.write() = next;
    ctx.node.apply_memory_config();
    Ok(Frame::ok())
}

pub fn resetstat(ctx: &mut Ctx<'_>) -> CommandResult {
    ctx.node.stats.reset();
    Ok(Frame::ok())
}

pub fn help(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(help_reply(
        ctx.spec.name,
        &[
            "GET <pattern>",
            "    Return parameters matching the glob-like <pattern> and their values.",
            "SET <directive> <value>",
            "    Set the configuration <directive> to <value>.",
            "RESETSTAT",
            "    Reset statistics reported by the INFO command.",
        ],
    ))
}
