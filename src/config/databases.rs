//! `[databases.NAME]`: the application's own databases that `sql`, `cleanup` and `notify` jobs
//! work on (`database = "NAME"`), each given by `url`, or by `url_env` / `url_file` when the
//! URL holds a password. Read here into the store's registry, which opens each on first use.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::problems::Collector;
use super::read::named_entries;
use crate::secret::{DatabaseUrl, SecretSource};
use crate::store::user::{DatabaseSource, Databases};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseRaw {
    url: Option<String>,
    url_env: Option<String>,
    url_file: Option<PathBuf>,
}

/// The databases of `[databases]`; an entry that is refused is reported to `c` and left out.
pub(super) fn databases(value: Option<Spanned<DeValue<'_>>>, c: &mut Collector<'_>) -> Databases {
    let mut named = vec![];
    for (name, at, raw) in named_entries::<DatabaseRaw>(value, "databases", "database", c) {
        let at = Some(at);
        let what = format!("invalid `[databases.{name}]`");
        let source = match (
            raw.url,
            SecretSource::from_pair("url", raw.url_env, raw.url_file),
        ) {
            (_, Err(e)) => {
                c.push(what, at, e.to_string());
                continue;
            }
            (Some(url), Ok(None)) => DatabaseSource::Url(DatabaseUrl::new(url)),
            (None, Ok(Some(secret))) => DatabaseSource::Secret(secret),
            (Some(_), Ok(Some(_))) => {
                c.push(
                    what,
                    at,
                    "set one of `url`, `url_env` and `url_file`, not several",
                );
                continue;
            }
            (None, Ok(None)) => {
                c.push(
                    what,
                    at,
                    "set `url` (e.g. `sqlite:///srv/app/app.db`), or `url_env` / `url_file` \
                     when the URL holds a password",
                );
                continue;
            }
        };
        named.push((name, source));
    }
    Databases::new(named)
}

#[cfg(test)]
mod tests {
    use crate::config::tests::errors;

    #[test]
    fn each_database_names_one_url() {
        #[rustfmt::skip]
        let table = [
            ("[databases.app]\n",
             "invalid `[databases.app]` (config.toml line 1, column 12): set `url` (e.g. \
              `sqlite:///srv/app/app.db`), or `url_env` / `url_file` when the URL holds a \
              password"),
            ("[databases.app]\nurl = \"sqlite://a.db\"\nurl_env = \"APP_DB\"\n",
             "invalid `[databases.app]` (config.toml line 1, column 12): set one of `url`, \
              `url_env` and `url_file`, not several"),
            ("[databases.App]\nurl = \"sqlite://a.db\"\n",
             "invalid `[databases.App]` (config.toml line 1, column 12): a database name is \
              1-64 of a-z, 0-9, `_` and `-`"),
            ("[databases.app]\nurl = \"sqlite://a.db\"\nuser = \"x\"\n",
             "invalid `[databases]` section (config.toml line 3, column 1): unknown field \
              `user`, expected one of `url`, `url_env`, `url_file`"),
        ];
        for (text, message) in table {
            assert_eq!(errors(text), message, "{text}");
        }
    }
}
