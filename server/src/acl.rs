//! Users and their permissions, as Redis 7's ACL: who may authenticate with which password,
//! run which commands (by name or by the command table's categories) and touch which keys.
//!
//! Users live in the metadata group (`{meta}user:<name>`, see `cluster::meta`), so one created
//! on any node works on every node. The `default` user is the exception until someone edits
//! it: it comes from `requirepass` (no password: `nopass`, all commands, all keys).
//!
//! Command rules are kept in the order given (`-@all +@read -keys`) and evaluated in that
//! order against the command table, so a command added later falls under the categories it
//! belongs to without any list here to update.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shoal_protocol::{CommandSpec, COMMANDS};

use crate::glob::glob_match;

pub const DEFAULT_USER: &str = "default";

/// One user, as stored in group 0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub enabled: bool,
    /// Any password is accepted.
    pub nopass: bool,
    /// SHA-256 of each accepted password, lowercase hex (Redis stores them so too).
    pub passwords: BTreeSet<String>,
    /// Every key (`allkeys`, `~*`).
    pub all_keys: bool,
    /// Glob patterns of the keys the user may touch.
    pub key_patterns: Vec<String>,
    /// `+@cat`, `-@cat`, `+cmd`, `-cmd`, in order; `+@all` / `-@all` reset what came before.
    pub command_rules: Vec<String>,
}

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    Command,
    Key(String),
}

impl User {
    /// The implicit `default` user: `requirepass` (if any) is its password.
    pub fn implicit_default(requirepass: Option<&str>) -> User {
        let mut user = User {
            enabled: true,
            nopass: requirepass.is_none(),
            all_keys: true,
            command_rules: vec!["+@all".into()],
            ..User::default()
        };
        if let Some(pw) = requirepass {
            user.passwords.insert(hash_password(pw.as_bytes()));
        }
        user
    }

    pub fn check_password(&self, password: &[u8]) -> bool {
        self.enabled && (self.nopass || self.passwords.contains(&hash_password(password)))
    }

    /// Applies one `ACL SETUSER` rule; `Err` carries Redis's reason text.
    pub fn apply(&mut self, rule: &str) -> Result<(), &'static str> {
        let lower = rule.to_ascii_lowercase();
        match lower.as_str() {
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            "resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            "allkeys" => self.set_all_keys(),
            "resetkeys" => {
                self.all_keys = false;
                self.key_patterns.clear();
            }
            "allcommands" => self.command_rules = vec!["+@all".into()],
            "nocommands" => self.command_rules = vec!["-@all".into()],
            // shoal has no pub/sub channels or selectors of its own yet: accepted, no effect.
            "allchannels" | "resetchannels" => {}
            "reset" => *self = User::default(),
            _ => return self.apply_valued(rule),
        }
        Ok(())
    }

    fn apply_valued(&mut self, rule: &str) -> Result<(), &'static str> {
        let (head, rest) = rule.split_at(1);
        match head {
            ">" => {
                self.passwords.insert(hash_password(rest.as_bytes()));
                self.nopass = false;
            }
            "<" => {
                self.passwords.remove(&hash_password(rest.as_bytes()));
            }
            "#" | "!" => {
                let valid = rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit());
                if !valid {
                    return Err("The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters");
                }
                let hash = rest.to_ascii_lowercase();
                if head == "#" {
                    self.passwords.insert(hash);
                    self.nopass = false;
                } else {
                    self.passwords.remove(&hash);
                }
            }
            "~" if rest == "*" => self.set_all_keys(),
            "~" => {
                if self.all_keys {
                    return Err("Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns");
                }
                self.key_patterns.push(rest.to_owned());
            }
            "&" => {}
            "+" | "-" => {
                let name = rest.to_ascii_lowercase();
                let known = match name.strip_prefix('@') {
                    Some(cat) => categories().iter().any(|c| c == cat),
                    None => CommandSpec::by_name(&name).is_some(),
                };
                if !known {
                    return Err("Unknown command or category name in ACL");
                }
                if name == "@all" {
                    self.command_rules.clear();
                }
                self.command_rules.push(format!("{head}{name}"));
            }
            _ => return Err("Syntax error"),
        }
        Ok(())
    }

    fn set_all_keys(&mut self) {
        self.all_keys = true;
        self.key_patterns.clear();
    }

    /// May this user run `spec` on `args`?
    pub fn check(&self, spec: &CommandSpec, args: &[Bytes]) -> Result<(), Denied> {
        if !self.allows_command(spec) {
            return Err(Denied::Command);
        }
        if self.all_keys {
            return Ok(());
        }
        for key in spec.keys(args) {
            if !self
                .key_patterns
                .iter()
                .any(|p| glob_match(p.as_bytes(), key, false))
            {
                return Err(Denied::Key(String::from_utf8_lossy(key).into_owned()));
            }
        }
        Ok(())
    }

    fn allows_command(&self, spec: &CommandSpec) -> bool {
        let mut allowed = false;
        for rule in &self.command_rules {
            let (grant, name) = rule.split_at(1);
            if matches_rule(spec, name) {
                allowed = grant == "+";
            }
        }
        allowed
    }

    /// The user's rules as `ACL LIST` shows them (without the `user <name>` prefix).
    pub fn describe(&self) -> String {
        let mut parts = vec![self.flags().join(" ")];
        parts.extend(self.passwords.iter().map(|h| format!("#{h}")));
        let keys = self.keys_text();
        if !keys.is_empty() {
            parts.push(keys);
        }
        parts.push("resetchannels".into());
        parts.push(self.commands_text());
        parts.join(" ")
    }

    pub fn flags(&self) -> Vec<&'static str> {
        let mut flags = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            flags.push("nopass");
        }
        flags
    }

    pub fn keys_text(&self) -> String {
        if self.all_keys {
            return "~*".into();
        }
        let patterns: Vec<String> = self.key_patterns.iter().map(|p| format!("~{p}")).collect();
        patterns.join(" ")
    }

    pub fn commands_text(&self) -> String {
        match self.command_rules.first().map(String::as_str) {
            Some("+@all") => self.command_rules.join(" "),
            _ => std::iter::once("-@all".to_owned())
                .chain(self.command_rules.iter().filter(|r| *r != "-@all").cloned())
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// Whether a rule's name (`@read`, `get`, `config`, `config|get`) covers `spec`.
fn matches_rule(spec: &CommandSpec, name: &str) -> bool {
    match name.strip_prefix('@') {
        Some("all") => true,
        Some(cat) => spec
            .acl_categories()
            .iter()
            .any(|c| c.strip_prefix('@') == Some(cat)),
        None => {
            spec.name == name
                || spec
                    .name
                    .split_once('|')
                    .is_some_and(|(parent, _)| parent == name)
        }
    }
}

/// Every ACL category (without `@`): `all` and those the command table's entries belong to.
pub fn categories() -> Vec<String> {
    let mut cats: BTreeSet<&str> = BTreeSet::new();
    cats.insert("all");
    for spec in COMMANDS {
        for c in spec.acl_categories() {
            cats.insert(c.trim_start_matches('@'));
        }
    }
    cats.into_iter().map(str::to_owned).collect()
}

/// The commands in `category` (top-level names, as `ACL CAT <category>` lists them).
pub fn commands_in(category: &str) -> Option<Vec<&'static str>> {
    let cat = category.to_ascii_lowercase();
    if !categories().contains(&cat) {
        return None;
    }
    let name = format!("@{cat}");
    Some(
        COMMANDS
            .iter()
            .filter(|c| matches_rule(c, &name) && !c.is_container())
            .map(|c| c.name)
            .collect(),
    )
}

pub fn hash_password(password: &[u8]) -> String {
    Sha256::digest(password)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A user name is one word of printable characters (as in Redis: no spaces).
pub fn valid_user_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|b| b.is_ascii_graphic())
}

/// One `ACL LOG` entry: a refused command, key or authentication.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub id: u64,
    pub count: u64,
    /// `command`, `key` or `auth`.
    pub reason: &'static str,
    pub object: String,
    pub username: String,
    pub client_info: String,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// The node's recent ACL denials (node-local, as in Redis), newest first, bounded.
#[derive(Default)]
pub struct AclLog {
    inner: Mutex<(u64, VecDeque<Arc<LogEntry>>)>,
}

const LOG_MAX: usize = 128;

impl AclLog {
    /// Records a denial; a repeat of the newest matching one (same reason, object and user)
    /// only bumps its count, as Redis groups them.
    pub fn record(&self, reason: &'static str, object: &str, username: &str, client_info: String) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut guard = self.inner.lock();
        let (next_id, entries) = &mut *guard;
        if let Some(pos) = entries
            .iter()
            .position(|e| e.reason == reason && e.object == object && e.username == username)
        {
            let mut entry = (*entries[pos]).clone();
            entry.count += 1;
            entry.updated_ms = now;
            entry.client_info = client_info;
            entries.remove(pos);
            entries.push_front(Arc::new(entry));
            return;
        }
        entries.push_front(Arc::new(LogEntry {
            id: *next_id,
            count: 1,
            reason,
            object: object.to_owned(),
            username: username.to_owned(),
            client_info,
            created_ms: now,
            updated_ms: now,
        }));
        *next_id += 1;
        entries.truncate(LOG_MAX);
    }

    pub fn entries(&self, limit: usize) -> Vec<Arc<LogEntry>> {
        self.inner.lock().1.iter().take(limit).cloned().collect()
    }

    pub fn reset(&self) {
        self.inner.lock().1.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(rules: &[&str]) -> User {
        let mut u = User::default();
        for r in rules {
            u.apply(r).unwrap();
        }
        u
    }

    fn req(words: &[&str]) -> (&'static CommandSpec, Vec<Bytes>) {
        let args: Vec<Bytes> = words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        (CommandSpec::lookup(&args).unwrap(), args)
    }

    fn may(u: &User, words: &[&str]) -> Result<(), Denied> {
        let (spec, args) = req(words);
        u.check(spec, &args)
    }

    #[test]
    fn rules_apply_in_order_over_the_command_tables_categories() {
        let u = user(&["on", ">pw", "~cache:*", "+@read", "-strlen", "+set"]);
        assert!(u.check_password(b"pw") && !u.check_password(b"nope"));
        assert_eq!(may(&u, &["GET", "cache:1"]), Ok(()));
        assert_eq!(may(&u, &["SET", "cache:1", "v"]), Ok(()));
        assert_eq!(may(&u, &["STRLEN", "cache:1"]), Err(Denied::Command));
        assert_eq!(may(&u, &["DEL", "cache:1"]), Err(Denied::Command));
        assert_eq!(
            may(&u, &["MGET", "cache:1", "other"]),
            Err(Denied::Key("other".into()))
        );
        assert_eq!(may(&u, &["CONFIG", "GET", "x"]), Err(Denied::Command));
        let admin = user(&[
            "on",
            "nopass",
            "allkeys",
            "+@all",
            "-@dangerous",
            "+config|get",
        ]);
        assert_eq!(may(&admin, &["CONFIG", "GET", "x"]), Ok(()));
        assert_eq!(
            may(&admin, &["CONFIG", "SET", "x", "y"]),
            Err(Denied::Command)
        );
        assert_eq!(may(&admin, &["FLUSHALL"]), Err(Denied::Command));
        assert_eq!(may(&admin, &["SET", "k", "v"]), Ok(()));
    }

    #[test]
    fn a_disabled_user_cannot_authenticate_and_reset_forgets_everything() {
        let mut u = user(&["off", ">pw", "allkeys", "allcommands"]);
        assert!(!u.check_password(b"pw"));
        u.apply("on").unwrap();
        assert!(u.check_password(b"pw"));
        u.apply("reset").unwrap();
        assert_eq!(u, User::default());
    }

    #[test]
    fn hashed_passwords_and_bad_rules() {
        let hash = hash_password(b"secret");
        let u = user(&["on", &format!("#{hash}")]);
        assert!(u.check_password(b"secret"));
        let mut u = User::default();
        assert!(u.apply("#abc").is_err());
        assert_eq!(
            u.apply("+nosuchcommand"),
            Err("Unknown command or category name in ACL")
        );
        assert_eq!(u.apply("bogus"), Err("Syntax error"));
    }

    #[test]
    fn describe_reads_like_acl_list() {
        let u = user(&["on", "nopass", "~a*", "-@all", "+get"]);
        assert_eq!(u.describe(), "on nopass ~a* resetchannels -@all +get");
        assert_eq!(
            User::implicit_default(None).describe(),
            "on nopass ~* resetchannels +@all"
        );
        assert!(categories().contains(&"read".to_owned()));
        assert!(commands_in("string").unwrap().contains(&"get"));
    }
}
