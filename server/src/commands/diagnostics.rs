//! `SLOWLOG GET|LEN|RESET` and `LATENCY HISTOGRAM`: finding slow commands.

use shoal_protocol::{CommandSpec, Frame, COMMANDS};

use super::args::{int, text};
use super::client::help_reply;
use super::Ctx;
use crate::error::{CommandError, CommandResult};
use crate::latency::{Histogram, BUCKETS};

/// `SLOWLOG GET [count]`: newest first; a negative count means every entry.
pub fn slowlog_get(ctx: &mut Ctx<'_>) -> CommandResult {
    let count = match ctx.args.get(2) {
        None => Some(10),
        Some(arg) => match int(arg) {
            Ok(n) if n < -1 => {
                return Err(CommandError::Err(
                    "count should be greater than or equal to -1".into(),
                ))
            }
            Ok(-1) => None,
            Ok(n) => Some(n as usize),
            Err(_) => return Err(CommandError::NotInteger),
        },
    };
    let entries = ctx.node.slowlog.newest(count);
    Ok(Frame::Array(
        entries
            .into_iter()
            .map(|e| {
                Frame::Array(vec![
                    Frame::Integer(e.id as i64),
                    Frame::Integer(e.time as i64),
                    Frame::Integer(e.usec as i64),
                    Frame::bulk_array(e.args),
                    Frame::bulk(e.client_addr.to_string()),
                    Frame::bulk(e.client_name),
                ])
            })
            .collect(),
    ))
}

pub fn slowlog_len(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(Frame::Integer(ctx.node.slowlog.len() as i64))
}

pub fn slowlog_reset(ctx: &mut Ctx<'_>) -> CommandResult {
    ctx.node.slowlog.reset();
    Ok(Frame::ok())
}

pub fn slowlog_help(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(help_reply(
        ctx.spec.name,
        &[
            "GET [<count>]",
            "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
            "    Entries are made of:",
            "    id, timestamp, time in microseconds, arguments array, client IP and port,",
            "    client name",
            "LEN",
            "    Return the length of the slowlog.",
            "RESET",
            "    Reset the slowlog.",
        ],
    ))
}

/// `LATENCY HISTOGRAM [command ...]`: per command, its calls and the cumulative count of
/// calls at or below each power-of-two bound (µs), as Redis 7 answers.
pub fn latency_histogram(ctx: &mut Ctx<'_>) -> CommandResult {
    let wanted: Vec<&'static CommandSpec> = if ctx.args.len() > 2 {
        ctx.args[2..]
            .iter()
            .filter_map(|a| CommandSpec::by_name(&text(a).to_ascii_lowercase()))
            .collect()
    } else {
        COMMANDS.iter().collect()
    };
    let mut out = Vec::new();
    for spec in wanted {
        let h = ctx.node.latency.command(spec.id);
        if h.calls() == 0 {
            continue;
        }
        out.push((
            Frame::bulk(spec.name),
            Frame::Map(vec![
                (Frame::bulk("calls"), Frame::Integer(h.calls() as i64)),
                (Frame::bulk("histogram_usec"), cumulative(&h)),
            ]),
        ));
    }
    Ok(Frame::Map(out))
}

/// The buckets from the first that holds a call to the last, cumulative.
fn cumulative(h: &Histogram) -> Frame {
    let first = h.counts.iter().position(|&c| c > 0).unwrap_or(0);
    let last = h.counts.iter().rposition(|&c| c > 0).unwrap_or(0);
    let mut seen = h.counts[..first].iter().sum::<u64>();
    let mut pairs = Vec::new();
    for i in first..=last.min(BUCKETS - 1) {
        seen += h.counts[i];
        pairs.push((
            Frame::Integer(Histogram::bound_usec(i) as i64),
            Frame::Integer(seen as i64),
        ));
    }
    Frame::Map(pairs)
}

pub fn latency_help(ctx: &mut Ctx<'_>) -> CommandResult {
    Ok(help_reply(
        ctx.spec.name,
        &[
            "HISTOGRAM [COMMAND ...]",
            "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
            "    If no commands are specified then all histograms are replied.",
        ],
    ))
}
