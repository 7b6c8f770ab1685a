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
        name: "protected-mode",
        get: |c| c.protected_mode.clone(),
        set: Some(|c, v| {
            let v = v.to_ascii_lowercase();
            if v != "yes" && v != "no" {
                return Err("argument must be 'yes' or 'no'".into());
            }
            c.protected_mode = v;
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
        name: "client-output-buffer-limit",
        get: |c| c.output_limits.to_string(),
        set: Some(|c, v| {
            let words: Vec<&str> = v.split_whitespace().collect();
            c.output_limits = c.output_limits.with(&words)?;
            Ok(())
        }),
    },
    Param {
        name: "tls-cluster",
        get: |c| c.tls_cluster.clone(),
        set: None,
    },
    // Replication is TLS exactly when the peer port is (see `Config::tls_replication`).
    Param {
        name: "tls-replication",
        get: |c| c.tls_cluster.clone(),
        set: None,
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
    Param {
        name: "slowlog-log-slower-than",
        get: |c| c.slowlog_log_slower_than.to_string(),
        set: Some(|c, v| {
            c.slowlog_log_slower_than = number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "slowlog-max-len",
        get: |c| c.slowlog_max_len.to_string(),
        set: Some(|c, v| {
            c.slowlog_max_len = number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "loglevel",
        get: |c| c.log_level.clone(),
        set: Some(|c, v| {
            crate::logging::filter_for(v)?;
            c.log_level = v.to_owned();
            Ok(())
        }),
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
    apply_at_run_time(ctx.node, &next);
    *ctx.node.config.write() = next;
    ctx.node.apply_memory_config();
    Ok(Frame::ok())
}

/// Makes the parameters that live outside `Config` follow it (after `CONFIG SET`).
fn apply_at_run_time(node: &crate::node::Node, config: &Config) {
    node.pubsub.set_limit(config.output_limits.pubsub.hard);
    node.slowlog.configure(
        config.slowlog_log_slower_than,
        config.slowlog_max_len as usize,
    );
    if node.config.read().log_level != config.log_level {
        // Checked by the setter; a failure here would only mean no subscriber is installed.
        let _ = crate::logging::set_level(&config.log_level);
    }
}

/// `CONFIG REWRITE`: writes the values in force back to the `--config` file. Lines of
/// parameters `CONFIG SET` can change get their current value; such parameters not in the
/// file are appended when they differ from the default; every other line (comments, other
/// settings) is kept as it was.
pub fn rewrite(ctx: &mut Ctx<'_>) -> CommandResult {
    let config = ctx.node.config.read().clone();
    let Some(path) = config.config.clone() else {
        return Err(CommandError::Err(
            "The server is running without a config file".into(),
        ));
    };
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let text = rewritten(&old, &config);
    write_atomically(&path, &text)
        .map_err(|e| CommandError::Err(format!("Rewriting config file: {e}")))?;
    tracing::info!(file = %path.display(), "CONFIG REWRITE executed with success");
    Ok(Frame::ok())
}

fn rewritten(old: &str, config: &Config) -> String {
    let defaults = Config::load_from(vec!["shoal-server".into()]).ok();
    let settable: Vec<&Param> = PARAMS.iter().filter(|p| p.set.is_some()).collect();
    let mut written = std::collections::HashSet::new();
    let mut out = String::new();
    for line in old.lines() {
        let name = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match settable.iter().find(|p| param_matches(p, &name)) {
            Some(p) if !line.trim_start().starts_with('#') => {
                if written.insert(p.name) {
                    out.push_str(&config_line(p, config));
                }
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for p in settable {
        let differs = defaults
            .as_ref()
            .is_none_or(|d| (p.get)(d) != (p.get)(config));
        if !written.contains(p.name) && differs {
            out.push_str(&config_line(p, config));
        }
    }
    out
}

/// A file line names a parameter by its Redis name or by its flag's name (`log-level`).
fn param_matches(p: &Param, name: &str) -> bool {
    p.name == name || (p.name == "loglevel" && name == "log-level")
}

fn config_line(p: &Param, config: &Config) -> String {
    let value = (p.get)(config);
    let quoted = if value.is_empty() || value.contains([' ', '"', '\'', '\\']) {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        value
    };
    format!("{} {quoted}\n", p.name)
}

fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("rewrite-tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

pub fn resetstat(ctx: &mut Ctx<'_>) -> CommandResult {
    ctx.node.stats.reset();
    ctx.node.latency.reset();
    ctx.node.errors.reset();
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
            "REWRITE",
            "    Rewrite the configuration file.",
        ],
    ))
}
