//! Commands as argument lists, and what routing needs to know about them (their slot, whether
//! they write), read from the protocol crate's command table.

use bytes::{Bytes, BytesMut};
use shoal_protocol::{encode_command, key_slot, CommandSpec, Flags};

use crate::error::Error;

/// Something that can be one argument of a command.
pub trait ToArg {
    fn to_arg(self) -> Bytes;
}

impl ToArg for Bytes {
    fn to_arg(self) -> Bytes {
        self
    }
}

impl ToArg for &Bytes {
    fn to_arg(self) -> Bytes {
        self.clone()
    }
}

impl ToArg for &str {
    fn to_arg(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

impl ToArg for String {
    fn to_arg(self) -> Bytes {
        Bytes::from(self)
    }
}

impl ToArg for &String {
    fn to_arg(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

impl ToArg for &[u8] {
    fn to_arg(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl<const N: usize> ToArg for &[u8; N] {
    fn to_arg(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl ToArg for Vec<u8> {
    fn to_arg(self) -> Bytes {
        Bytes::from(self)
    }
}

macro_rules! int_args {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn to_arg(self) -> Bytes {
                Bytes::from(self.to_string())
            }
        }
    )*};
}
int_args!(i32, i64, u32, u64, usize);

impl ToArg for f64 {
    fn to_arg(self) -> Bytes {
        Bytes::from(shoal_protocol::format_double(self))
    }
}

/// One command: its name and arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    args: Vec<Bytes>,
}

/// Builds a command from its name and arguments: `cmd(["SET", "k", "v"])`.
pub fn cmd<I>(args: I) -> Cmd
where
    I: IntoIterator,
    I::Item: ToArg,
{
    Cmd {
        args: args.into_iter().map(ToArg::to_arg).collect(),
    }
}

/// Where a command must go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// The slot of its (first) key; `None` for keyless commands (any node answers them).
    pub slot: Option<u16>,
    /// Its keys hash to different slots: no cluster node can run it (a single server can).
    pub cross_slot: bool,
    /// True unless the command table says it only reads. Unknown commands count as writes,
    /// so they are never sent to a replica nor retried after an ambiguous failure.
    pub write: bool,
}

impl Cmd {
    /// A command with just a name; add arguments with [`Cmd::arg`].
    pub fn new(name: impl ToArg) -> Cmd {
        Cmd {
            args: vec![name.to_arg()],
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl ToArg) -> Cmd {
        self.args.push(arg.to_arg());
        self
    }

    /// The name and arguments.
    pub fn args(&self) -> &[Bytes] {
        &self.args
    }

    /// The command's name as sent, for logs and spans.
    pub fn name(&self) -> String {
        self.args
            .first()
            .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
            .unwrap_or_default()
    }

    /// Appends the command's wire form to `out`.
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        encode_command(&self.args, out);
    }

    /// The slot its keys hash to and whether it writes.
    pub(crate) fn route(&self) -> Result<Route, Error> {
        if self.args.is_empty() {
            return Err(Error::InvalidRequest("empty command".into()));
        }
        // An unknown command or a wrong arity is the server's to report; route it by no key.
        let Ok(spec) = CommandSpec::lookup(&self.args) else {
            return Ok(Route {
                slot: None,
                cross_slot: false,
                write: true,
            });
        };
        let mut slot = None;
        let mut cross_slot = false;
        for key in spec.keys(&self.args) {
            let s = key_slot(key);
            match slot {
                None => slot = Some(s),
                Some(first) => cross_slot |= first != s,
            }
        }
        Ok(Route {
            slot,
            cross_slot,
            write: !spec.flags.contains(Flags::READONLY),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_the_command_table() {
        let r = cmd(["GET", "foo"]).route().unwrap();
        assert_eq!(r.slot, Some(key_slot(b"foo")));
        assert!(!r.write);
        let r = cmd(["set", "foo", "1"]).route().unwrap();
        assert!(r.write);
        assert_eq!(cmd(["PING"]).route().unwrap().slot, None);
        assert!(cmd(["MGET", "a", "b"]).route().unwrap().cross_slot);
        assert!(!cmd(["MGET", "{t}a", "{t}b"]).route().unwrap().cross_slot);
        assert!(cmd(["NOSUCH", "x"]).route().unwrap().write);
    }
}
