//! The console's users file (`[http.console] users_file`): TOML `[[user]]` entries with a
//! name, a role (`viewer` or `operator`) and an argon2 password hash (a PHC string). Written by
//! `tickler console add-user`, read by the daemon at start-up (refusing to start on a bad file)
//! and again whenever it changes, so a new user needs no restart and a removed one is logged
//! out at once.

use std::fmt;
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};

/// What a console user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads every page, acts on nothing.
    Viewer,
    /// Also runs, pauses and resumes jobs, retries and cancels tasks, marks invoices paid and
    /// blocks addresses.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

/// One user of the file.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub password_hash: String,
}

// The hash stays out of logs and `Debug` output.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<User>,
}

/// Why the users file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error(
        "cannot read the console users file `{path}`: {cause}; create it with `tickler console \
         add-user NAME --role operator`, or fix `[http.console] users_file`"
    )]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("invalid console users file `{path}`: {cause}")]
    Invalid {
        path: PathBuf,
        cause: Box<toml::de::Error>,
    },
    #[error(
        "invalid console users file `{path}`: user `{name}` has no valid argon2 password hash; \
         set it again with `tickler console add-user {name} --role ROLE`"
    )]
    BadHash { path: PathBuf, name: String },
    #[error("invalid console users file `{path}`: user `{name}` appears twice")]
    Duplicate { path: PathBuf, name: String },
    #[error("cannot write the console users file `{path}`: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("the password is too short ({len} characters): use at least {MIN_PASSWORD} characters")]
    ShortPassword { len: usize },
    #[error(
        "invalid user name `{0}`: use 1-64 letters, digits, `.`, `_`, `-` or `@` (it is shown \
         on pages and in the audit log)"
    )]
    BadName(String),
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// The shortest password `add-user` accepts.
pub const MIN_PASSWORD: usize = 12;

/// The users of the file at `path`, checked (names unique, hashes parse).
pub fn read_users(path: &Path) -> Result<Vec<User>, UsersError> {
    let text = std::fs::read_to_string(path).map_err(|cause| UsersError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    parse_users(path, &text)
}

/// The users of `text` (the file at `path`), checked.
pub fn parse_users(path: &Path, text: &str) -> Result<Vec<User>, UsersError> {
    let file: UsersFile = toml::from_str(text).map_err(|cause| UsersError::Invalid {
        path: path.to_path_buf(),
        cause: Box::new(cause),
    })?;
    let mut seen = std::collections::HashSet::new();
    for u in &file.user {
        if !seen.insert(u.name.as_str()) {
            return Err(UsersError::Duplicate {
                path: path.to_path_buf(),
                name: u.name.clone(),
            });
        }
        check_name(&u.name)?;
        if PasswordHash::new(&u.password_hash).is_err() {
            return Err(UsersError::BadHash {
                path: path.to_path_buf(),
                name: u.name.clone(),
            });
        }
    }
    Ok(file.user)
}

/// The text of a users file holding `users`.
pub fn render_users(users: &[User]) -> String {
    let file = UsersFile {
        user: users.to_vec(),
    };
    let body = toml::to_string(&file).unwrap_or_default();
    format!(
        "# tickler console users: written by `tickler console add-user` / `remove-user`.\n\
         # Roles: viewer (reads), operator (also acts). Hashes are argon2id.\n\n{body}"
    )
}

/// Refuses names that would be awkward on pages, in cookies' logs and in the audit log.
pub fn check_name(name: &str) -> Result<(), UsersError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(UsersError::BadName(name.to_string()))
    }
}

/// An argon2id hash (PHC string) of `password` with a random salt from the OS.
pub fn hash_password(password: &str) -> Result<String, UsersError> {
    let len = password.chars().count();
    if len < MIN_PASSWORD {
        return Err(UsersError::ShortPassword { len });
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| UsersError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| UsersError::Hash(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (argon2 compares in constant time).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse batter"));
        assert!(!verify_password("not a hash", "correct horse battery"));
        assert_eq!(
            hash_password("short").unwrap_err().to_string(),
            "the password is too short (5 characters): use at least 12 characters"
        );
    }

    #[test]
    fn users_files_round_trip_and_bad_ones_say_what_is_wrong() {
        let p = Path::new("users.toml");
        let users = vec![User {
            name: "ana".into(),
            role: Role::Operator,
            password_hash: hash_password("a long password").unwrap(),
        }];
        assert_eq!(parse_users(p, &render_users(&users)).unwrap(), users);
        assert!(!format!("{:?}", users[0]).contains("argon2"));
        for (text, message) in [
            (
                "[[user]]\nname = \"ana\"\nrole = \"operator\"\npassword_hash = \"x\"\n",
                "invalid console users file `users.toml`: user `ana` has no valid argon2 \
                 password hash; set it again with `tickler console add-user ana --role ROLE`",
            ),
            (
                "[[user]]\nname = \"a b\"\nrole = \"viewer\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\"\n",
                "invalid user name `a b`: use 1-64 letters, digits, `.`, `_`, `-` or `@` (it is \
                 shown on pages and in the audit log)",
            ),
        ] {
            assert_eq!(parse_users(p, text).unwrap_err().to_string(), message);
        }
        let e = parse_users(
            p,
            "[[user]]\nname = \"ana\"\nrole = \"root\"\npassword_hash = \"x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("invalid console users file `users.toml`: "),
            "{e}"
        );
        assert!(e.contains("unknown variant `root`"), "{e}");
    }
}
