//! `examples/`: one config per seed. Each passes `tickler check` with no warning, its SQL
//! prepared against the schema of the application tables it ships (`schema.sql`), so an
//! example naming a table or column its schema lacks fails here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::helpers::{BIN, stderr, stdout};

pub(crate) fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// The example directories, sorted.
fn examples() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The statements of an SQL file: `--` comments dropped, split on `;`.
pub(crate) fn statements(sql: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// An SQLite file in `dir` with the tables of `schema` (none: an empty database); its URL.
async fn app_database(dir: &Path, schema: Option<&Path>) -> String {
    let path = dir.join("app.db");
    // `connect_user` opens an existing file only, as tickler does.
    std::fs::write(&path, b"").unwrap();
    let url = format!("sqlite://{}", path.display());
    let store =
        tickler::store::Store::connect_user(&tickler::secret::DatabaseUrl::new(url.clone()))
            .await
            .unwrap();
    if let Some(schema) = schema {
        let sql = std::fs::read_to_string(schema).unwrap();
        store.execute(&statements(&sql), true).await.unwrap();
    }
    store.close().await;
    url
}

/// `tickler check --config CONFIG` in an empty directory, `APP_DATABASE_URL` set only to `app`.
fn check(dir: &Path, config: &Path, app: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .args(["check", "--config"])
        .arg(config)
        .env_remove("TICKLER_DATABASE_URL")
        .env_remove("TICKLER_CONFIG")
        .env_remove("APP_DATABASE_URL");
    if let Some(url) = app {
        cmd.env("APP_DATABASE_URL", url);
    }
    cmd.output().unwrap()
}

#[tokio::test]
async fn every_example_passes_check_against_its_schema_with_no_warning() {
    let dirs = examples();
    let names: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "000-collections-agent",
            "001-leaseup",
            "002-celery-beat",
            "003-vercel-cron",
            "004-apscheduler",
        ],
        "one example per seed"
    );
    let readme = std::fs::read_to_string(examples_dir().join("README.md")).unwrap();
    for (dir, name) in dirs.iter().zip(&names) {
        assert!(
            readme.contains(name.as_str()),
            "examples/README.md must describe `{name}`"
        );
        let tmp = tempfile::tempdir().unwrap();
        let schema = dir.join("schema.sql");
        let app = if schema.is_file() {
            Some(app_database(tmp.path(), Some(&schema)).await)
        } else {
            None
        };
        let out = check(tmp.path(), &dir.join("config.toml"), app.as_deref());
        assert!(
            out.status.success(),
            "`tickler check` fails on examples/{name}:\n{}",
            stderr(&out)
        );
        assert_eq!(stderr(&out), "", "`tickler check` warns on examples/{name}");
        assert!(stdout(&out).contains(": OK, "), "{}", stdout(&out));
    }
}

/// The check above is worth something only if `check` prepares the examples' SQL: on a
/// database without their tables, the examples that work on the application's tables fail,
/// naming the missing table.
#[tokio::test]
async fn an_example_whose_tables_are_missing_fails_check() {
    for name in ["003-vercel-cron", "004-apscheduler"] {
        let tmp = tempfile::tempdir().unwrap();
        let app = app_database(tmp.path(), None).await;
        let config = examples_dir().join(name).join("config.toml");
        let out = check(tmp.path(), &config, Some(&app));
        assert_eq!(
            out.status.code(),
            Some(1),
            "examples/{name} on an empty database"
        );
        assert!(
            stderr(&out).contains("no such table"),
            "examples/{name}: {}",
            stderr(&out)
        );
    }
}
