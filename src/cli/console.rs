//! `tickler console add-user|remove-user`: the users of the operator console, kept in
//! `[http.console] users_file` with argon2 password hashes. The password is read from stdin
//! (one line), never from the command line, and neither it nor its hash is printed. The file
//! is replaced atomically (a temporary file, mode 0600, renamed over it); the daemon reads it
//! again when it changes, so no restart is needed, and the sessions of a removed user, or of
//! one whose password or role changed, end at their next request.

use std::io::{BufRead, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::config::Config;
use crate::config::users::{
    Role, User, UsersError, check_name, hash_password, parse_users, render_users,
};

#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Create or replace a console user; the password is read from stdin (one line, at least
    /// 12 characters), e.g. `systemd-ask-password | tickler console add-user ana --role operator`.
    /// Replacing a user ends their open sessions.
    AddUser {
        name: String,
        #[arg(long, value_enum)]
        role: Role,
    },
    /// Remove a console user; their open sessions end at their next request (no restart).
    RemoveUser { name: String },
}

/// A refused `tickler console` command.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(
        "there is no `[http.console]` section in `{0}`: add one with `users_file = \
         \"console-users.toml\"` first (see `tickler print-config`)"
    )]
    NoConsole(PathBuf),
    #[error(transparent)]
    Users(#[from] UsersError),
    #[error("cannot read the password from stdin: {0}")]
    Stdin(std::io::Error),
    #[error(
        "no password on stdin: write it as one line, e.g. `systemd-ask-password | tickler console add-user ...`"
    )]
    EmptyPassword,
    #[error("there is no user `{name}` in `{path}`")]
    NoUser { name: String, path: PathBuf },
}

/// Runs a `tickler console` command with the password (for `add-user`) read from `stdin`;
/// returns what it prints.
pub fn console_command(
    config: &Config,
    command: ConsoleCommand,
    stdin: &mut dyn BufRead,
) -> Result<String, ConsoleError> {
    let path = config
        .http
        .as_ref()
        .and_then(|h| h.console.as_ref())
        .map(|c| c.users_file.clone())
        .ok_or_else(|| ConsoleError::NoConsole(config.path.clone()))?;
    let mut users = match std::fs::read_to_string(&path) {
        Ok(text) => parse_users(&path, &text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(cause) => {
            return Err(UsersError::Read {
                path: path.clone(),
                cause,
            }
            .into());
        }
    };
    match command {
        ConsoleCommand::AddUser { name, role } => {
            check_name(&name)?;
            let mut line = String::new();
            stdin.read_line(&mut line).map_err(ConsoleError::Stdin)?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                return Err(ConsoleError::EmptyPassword);
            }
            let password_hash = hash_password(password)?;
            let replaced = users.iter().any(|u| u.name == name);
            users.retain(|u| u.name != name);
            users.push(User {
                name: name.clone(),
                role,
                password_hash,
            });
            write_atomically(&path, &render_users(&users))?;
            let verb = if replaced { "replaced" } else { "added" };
            Ok(format!(
                "{verb} console user `{name}` ({}) in `{}`\n",
                role.as_str(),
                path.display()
            ))
        }
        ConsoleCommand::RemoveUser { name } => {
            let before = users.len();
            users.retain(|u| u.name != name);
            if users.len() == before {
                return Err(ConsoleError::NoUser { name, path });
            }
            write_atomically(&path, &render_users(&users))?;
            Ok(format!(
                "removed console user `{name}` from `{}`\n",
                path.display()
            ))
        }
    }
}

/// Writes `text` to a temporary file (mode 0600) beside `path`, then renames it over `path`.
fn write_atomically(path: &Path, text: &str) -> Result<(), UsersError> {
    let err = |cause| UsersError::Write {
        path: path.to_path_buf(),
        cause,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::users::{read_users, verify_password};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn add_user_writes_a_private_file_and_never_prints_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, "[http.console]\nusers_file = \"users.toml\"\n").unwrap();
        let config = crate::config::load(&cfg).unwrap();
        let add = |name: &str, role, pw: &str| {
            console_command(
                &config,
                ConsoleCommand::AddUser {
                    name: name.into(),
                    role,
                },
                &mut pw.as_bytes(),
            )
        };
        let out = add("ana", Role::Operator, "a long password 1\n").unwrap();
        assert_eq!(
            out,
            format!(
                "added console user `ana` (operator) in `{}`\n",
                dir.path().join("users.toml").display()
            )
        );
        assert!(!out.contains("long password"));
        let file = dir.path().join("users.toml");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        add("bob", Role::Viewer, "another long one\n").unwrap();
        let out = add("ana", Role::Viewer, "a new long password\n").unwrap();
        assert!(out.starts_with("replaced console user `ana` (viewer)"));
        let users = read_users(&file).unwrap();
        assert_eq!(users.len(), 2);
        let ana = users.iter().find(|u| u.name == "ana").unwrap();
        assert!(verify_password(&ana.password_hash, "a new long password"));
        assert_eq!(
            add("eve", Role::Viewer, "short\n").unwrap_err().to_string(),
            "the password is too short (5 characters): use at least 12 characters"
        );
        assert_eq!(
            add("eve", Role::Viewer, "").unwrap_err().to_string(),
            "no password on stdin: write it as one line, e.g. `systemd-ask-password | tickler \
             console add-user ...`"
        );
        let rm = |name: &str| {
            console_command(
                &config,
                ConsoleCommand::RemoveUser { name: name.into() },
                &mut "".as_bytes(),
            )
        };
        rm("bob").unwrap();
        assert_eq!(read_users(&file).unwrap().len(), 1);
        assert!(
            rm("bob")
                .unwrap_err()
                .to_string()
                .starts_with("there is no user `bob` in ")
        );
    }
}
