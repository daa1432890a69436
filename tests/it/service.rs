//! tickler as a systemd service, tested without systemd as PID 1: the notify protocol on a real
//! datagram socket, the unit checked by `systemd-analyze`, journald's native protocol on a real
//! socket (inside a private mount namespace), plain log lines, completions, man pages and
//! `deploy/install.sh`.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{BIN, Project, signal, stderr, stdout, wait_for_blocking};

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the daemon did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The notify messages received so far, each one datagram.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    got: Vec<String>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        NotifySocket {
            socket,
            path,
            got: vec![],
        }
    }

    /// Reads until a message satisfies `pred`; returns it. Panics after 20 s.
    fn until(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        let mut buf = vec![0u8; 4096];
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.got.push(msg.clone());
                if pred(&msg) {
                    return msg;
                }
            }
        }
        panic!("no notify message {what}; got {:?}", self.got);
    }
}

fn has(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

/// READY=1 once started, WATCHDOG=1 from the timer loop, RELOADING=1 then READY=1 around a
/// reload (taken or refused), STOPPING=1 on SIGTERM, in that order; a command job's process does
/// not get the protocol's variables.
#[test]
fn the_daemon_speaks_the_notify_protocol_in_order() {
    let p = Project::sqlite();
    let marker = p.path().join("job-env");
    let job = format!(
        "[[job]]\nname = \"env\"\nkind = \"command\"\nshell = true\nevery = \"1s\"\n\
         command = [\"echo ${{NOTIFY_SOCKET:-unset}} ${{WATCHDOG_USEC:-unset}} > {}\"]\n",
        marker.display()
    );
    p.write_config("", &job);
    let mut sock = NotifySocket::bind(p.path());
    let mut child = p
        .daemon_command()
        .env("NOTIFY_SOCKET", &sock.path)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let ready = sock.until("READY=1", |m| has(m, "READY=1"));
    assert!(
        ready.contains("STATUS=running 1 job(s)"),
        "a status with the job count: {ready:?}"
    );
    // Twice in a row, at about half of the 1 s watchdog timeout.
    sock.until("WATCHDOG=1", |m| has(m, "WATCHDOG=1"));
    let first = Instant::now();
    sock.until("a second WATCHDOG=1", |m| has(m, "WATCHDOG=1"));
    assert!(
        first.elapsed() < Duration::from_millis(900),
        "pings closer than the watchdog timeout: {:?}",
        first.elapsed()
    );

    // A reload that is taken.
    std::fs::write(
        p.config_path(),
        std::fs::read_to_string(p.config_path()).unwrap()
            + "\n[[job]]\nname = \"b\"\nkind = \"noop\"\nevery = \"1h\"\n",
    )
    .unwrap();
    signal(&child, libc::SIGHUP);
    let reloading = sock.until("RELOADING=1", |m| has(m, "RELOADING=1"));
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "systemd 253+ needs the monotonic time: {reloading:?}"
    );
    let after = sock.until("READY=1 after the reload", |m| has(m, "READY=1"));
    assert!(
        after.contains("running 2 job(s); config reloaded"),
        "{after:?}"
    );

    // A reload that is refused still ends in READY=1, with the refusal in the status.
    std::fs::write(p.config_path(), "[daemon\n").unwrap();
    signal(&child, libc::SIGHUP);
    sock.until("RELOADING=1", |m| has(m, "RELOADING=1"));
    let refused = sock.until("READY=1 after a refused reload", |m| has(m, "READY=1"));
    assert!(
        refused.contains("running 2 job(s); the last reload was refused"),
        "{refused:?}"
    );

    let start = Instant::now();
    while !marker.exists() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&child, libc::SIGTERM);
    let stopping = sock.until("STOPPING=1", |m| has(m, "STOPPING=1"));
    assert!(stopping.contains("STATUS=stopping"), "{stopping:?}");
    assert!(wait_exit(&mut child).success());

    // The order over the whole life: READY, RELOADING, READY, RELOADING, READY, STOPPING.
    let states: Vec<&str> = sock
        .got
        .iter()
        .flat_map(|m| m.lines())
        .filter(|l| ["READY=1", "RELOADING=1", "STOPPING=1"].contains(l))
        .collect();
    assert_eq!(
        states,
        [
            "READY=1",
            "RELOADING=1",
            "READY=1",
            "RELOADING=1",
            "READY=1",
            "STOPPING=1"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        "unset unset",
        "a job's process must not speak to systemd for the daemon"
    );
}

/// Without `NOTIFY_SOCKET` nothing is sent and the daemon runs as before (every test here
/// relies on that); with a socket that is gone, the daemon logs it and keeps running.
#[test]
fn a_missing_notify_socket_is_logged_not_fatal() {
    let p = Project::sqlite();
    p.write_config(
        "",
        "[[job]]\nname = \"a\"\nkind = \"noop\"\nevery = \"1h\"\n",
    );
    let log_path = p.path().join("stderr.log");
    let mut child = p
        .daemon_command()
        .env("NOTIFY_SOCKET", p.path().join("nobody-listens.sock"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_for_blocking(
        "the failed notification in the log",
        Duration::from_secs(30),
        || {
            read_log()
                .contains("cannot notify the service manager (NOTIFY_SOCKET)")
                .then_some(())
        },
    );
    // Logged at READY, after start-up: the daemon is past the point where it would have failed.
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running: {}",
        read_log()
    );
    signal(&child, libc::SIGTERM);
    assert!(wait_exit(&mut child).success());
}

fn systemd_analyze() -> Option<&'static str> {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: no systemd-analyze on this machine");
    }
    ok.then_some("systemd-analyze")
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `systemd-analyze security --offline=true` rates the shipped unit 1.5 or less, and
/// `systemd-analyze verify` is clean (with the unit pointed at this build's binary and the
/// generated man pages on MANPATH, since neither is installed here).
#[test]
fn the_unit_is_hardened_and_verifies_clean() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let out = Command::new(analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(repo("systemd/tickler.service"))
        .output()
        .unwrap();
    let text = stdout(&out);
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for tickler.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}{}", stderr(&out)));
    assert!(level <= 1.5, "exposure {level} > 1.5:\n{text}");

    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(repo("systemd/tickler.service"))
        .unwrap()
        .replace("/usr/bin/tickler", BIN);
    std::fs::write(dir.path().join("tickler.service"), unit).unwrap();
    let man = dir.path().join("man");
    let made = Command::new(BIN)
        .args(["man"])
        .arg(man.join("man1"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let out = Command::new(analyze)
        .arg("verify")
        .arg(dir.path().join("tickler.service"))
        .env("MANPATH", &man)
        .output()
        .unwrap();
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

/// The unit validates before it signals: its `ExecReload=` lines run in order and the first
/// that fails ends the reload, so with the check first a broken config fails `systemctl
/// reload` and the daemon is never sent SIGHUP. The checks print nothing on success (the
/// journal would get every job at each start and reload); an error still goes to stderr.
#[test]
fn the_unit_checks_the_config_quietly_before_it_reloads() {
    let unit = std::fs::read_to_string(repo("systemd/tickler.service")).unwrap();
    let values = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(key))
            .map(String::from)
            .collect()
    };
    let check = "/usr/bin/tickler --config /etc/tickler/config.toml check --quiet";
    assert_eq!(
        values("ExecReload="),
        [check, "/bin/kill -HUP $MAINPID"],
        "the check first, then the signal"
    );
    assert_eq!(values("ExecStartPre="), [check]);

    // The check line as systemd runs it, on this project's config.
    let p = Project::sqlite();
    let run_check = || {
        let words: Vec<String> = check
            .split_whitespace()
            .skip(1)
            .map(|w| {
                w.replace(
                    "/etc/tickler/config.toml",
                    &p.config_path().to_string_lossy(),
                )
            })
            .collect();
        Command::new(BIN)
            .args(&words)
            .current_dir(p.path())
            .env_remove("TICKLER_DATABASE_URL")
            .output()
            .unwrap()
    };
    p.write_config(
        "",
        "[[job]]\nname = \"a\"\nkind = \"noop\"\nevery = \"1h\"\n",
    );
    let ok = run_check();
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!((stdout(&ok), stderr(&ok)), (String::new(), String::new()));

    p.write_config(
        "",
        "[[job]]\nname = \"a\"\nkind = \"noop\"\nevery = \"1 fortnight\"\n",
    );
    let broken = run_check();
    assert_eq!(broken.status.code(), Some(1));
    assert_eq!(stdout(&broken), "");
    assert!(
        stderr(&broken).contains("error: invalid `every` interval `1 fortnight` for job `a`"),
        "{}",
        stderr(&broken)
    );
}

/// Sets up a private mount namespace whose /run/systemd/journal is `dir` (holding the test's
/// socket), then runs the daemon there with stderr on `log` and `JOURNAL_STREAM` naming it.
/// `None` when namespaces are not allowed here.
fn daemon_with_journal(p: &Project, dir: &Path, log: &Path) -> Option<Child> {
    let probe = Command::new("unshare")
        .args(["-Urm", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !probe {
        eprintln!("skipped: unshare -Urm is not allowed here");
        return None;
    }
    let stderr_file = std::fs::File::create(log).unwrap();
    let meta = stderr_file.metadata().unwrap();
    let script = format!(
        "mount -t tmpfs none /run && mkdir -p /run/systemd/journal && \
         mount --bind {} /run/systemd/journal && exec {BIN} run --config {}",
        dir.display(),
        p.config_path().display()
    );
    Some(
        Command::new("unshare")
            .args(["-Urm", "sh", "-c", &script])
            .current_dir(p.path())
            .env_remove("TICKLER_DATABASE_URL")
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .stdout(Stdio::null())
            .stderr(stderr_file)
            .spawn()
            .unwrap(),
    )
}

/// Parses journald's native datagrams: `KEY=value` lines, or `KEY\n<u64 le length><value>\n`.
fn journal_fields(datagram: &[u8]) -> Vec<(String, String)> {
    let mut fields = vec![];
    let mut rest = datagram;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            fields.push((
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            ));
            rest = &rest[(end + 1).min(rest.len())..];
        } else {
            let name = String::from_utf8_lossy(line).into_owned();
            let len = u64::from_le_bytes(rest[end + 1..end + 9].try_into().unwrap()) as usize;
            let value = &rest[end + 9..end + 9 + len];
            fields.push((name, String::from_utf8_lossy(value).into_owned()));
            rest = &rest[(end + 9 + len + 1).min(rest.len())..];
        }
    }
    fields
}

/// Under systemd (stderr is the journal stream) each event goes to journald natively, its
/// fields as journal fields: `journalctl -u tickler JOB=nightly` finds a job's runs, and the
/// message text names the job for the plain view.
#[test]
fn journal_lines_carry_job_run_id_status_and_scheduled_for() {
    let p = Project::sqlite();
    p.write_config(
        "",
        "[[job]]\nname = \"nightly\"\nkind = \"noop\"\nevery = \"1s\"\n",
    );
    let journal = tempfile::tempdir().unwrap();
    let socket = UnixDatagram::bind(journal.path().join("socket")).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let log = p.path().join("stderr.log");
    let Some(mut child) = daemon_with_journal(&p, journal.path(), &log) else {
        return;
    };
    let mut events: Vec<Vec<(String, String)>> = vec![];
    let mut buf = vec![0u8; 65536];
    let start = Instant::now();
    // The plain `journalctl -u tickler` view shows only MESSAGE: it names the job and status.
    let (started_text, finished_text) = (
        "run started job=nightly status=running",
        "run finished job=nightly status=succeeded",
    );
    let finished =
        |e: &Vec<(String, String)>| e.iter().any(|(k, v)| k == "MESSAGE" && v == finished_text);
    while start.elapsed() < Duration::from_secs(20) && !events.iter().any(finished) {
        if let Ok(n) = socket.recv(&mut buf) {
            events.push(journal_fields(&buf[..n]));
        }
    }
    signal(&child, libc::SIGTERM);
    assert!(wait_exit(&mut child).success());
    let field =
        |e: &Vec<(String, String)>, k: &str| e.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let message = |m: &str| {
        events
            .iter()
            .find(|e| field(e, "MESSAGE").as_deref() == Some(m))
            .unwrap_or_else(|| panic!("no journal entry {m:?} in {events:?}"))
    };
    let started = message(started_text);
    let done = message(finished_text);
    for e in [started, done] {
        assert_eq!(field(e, "JOB").as_deref(), Some("nightly"), "{e:?}");
        assert_eq!(field(e, "SYSLOG_IDENTIFIER").as_deref(), Some("tickler"));
        assert!(
            field(e, "SCHEDULED_FOR").is_some_and(|v| v.ends_with("UTC")),
            "{e:?}"
        );
        assert!(field(e, "PRIORITY").is_some(), "{e:?}");
    }
    assert_eq!(field(started, "STATUS").as_deref(), Some("running"));
    assert_eq!(field(done, "STATUS").as_deref(), Some("succeeded"));
    assert_eq!(field(started, "RUN_ID"), field(done, "RUN_ID"));
    assert!(field(done, "DURATION_S").is_some() && field(done, "RECORDS").is_some());
    assert!(
        message("tickler started")
            .iter()
            .any(|(k, _)| k == "INSTANCE")
    );
    // Nothing went to stderr: the journal has it all.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("run finished"), "{text}");
}

/// Not under systemd: plain lines on stderr, without colour when stderr is not a terminal,
/// one per run start and end with the duration and records; a stderr that only claims to be
/// the journal (a `JOURNAL_STREAM` naming another file) gets plain lines too.
#[test]
fn plain_lines_without_colour_when_stderr_is_not_a_terminal() {
    let p = Project::sqlite();
    p.write_config(
        "",
        "[[job]]\nname = \"nightly\"\nkind = \"noop\"\nevery = \"1s\"\n",
    );
    let log_path = p.path().join("stderr.log");
    let mut child = p
        .daemon_command()
        .env("JOURNAL_STREAM", "1:1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_for_blocking("a run to finish", Duration::from_secs(30), || {
        read_log().contains("run finished").then_some(())
    });
    signal(&child, libc::SIGTERM);
    wait_exit(&mut child);
    let log = read_log();
    assert!(!log.contains('\u{1b}'), "no ANSI colour: {log:?}");
    let start = log
        .lines()
        .find(|l| l.contains("run started"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        start.contains("job=nightly") && start.contains("status=\"running\""),
        "{start}"
    );
    let end = log
        .lines()
        .find(|l| l.contains("run finished"))
        .unwrap_or_else(|| panic!("{log}"));
    for f in [
        "job=nightly",
        "run_id=",
        "duration_s=",
        "records=0",
        "scheduled_for=",
    ] {
        assert!(end.contains(f), "{f} in {end}");
    }
}

/// The shipped completions and man pages are what this build generates (regenerate with
/// `deploy/generate.sh`), and the man pages cover every command.
#[test]
fn completions_and_man_pages_are_generated_and_cover_every_command() {
    for (shell, file) in [
        ("bash", "tickler.bash"),
        ("zsh", "_tickler"),
        ("fish", "tickler.fish"),
    ] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let shipped = std::fs::read_to_string(repo(&format!("deploy/completions/{file}")))
            .unwrap_or_default();
        assert!(
            stdout(&out) == shipped,
            "deploy/completions/{file} is stale: run deploy/generate.sh"
        );
        assert!(
            shipped.contains("enqueue"),
            "{shell}: subcommands completed"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut generated: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    generated.sort();
    for page in &generated {
        let fresh = std::fs::read_to_string(dir.path().join(page)).unwrap();
        let shipped =
            std::fs::read_to_string(repo(&format!("deploy/man/{page}"))).unwrap_or_default();
        assert!(
            fresh == shipped,
            "deploy/man/{page} is stale: run deploy/generate.sh"
        );
    }
    let mut shipped: Vec<String> = std::fs::read_dir(repo("deploy/man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    shipped.sort();
    assert_eq!(
        shipped, generated,
        "deploy/man holds exactly the generated pages"
    );
    for page in [
        "tickler.1",
        "tickler-run.1",
        "tickler-tasks-enqueue.1",
        "tickler-campaign-create.1",
        "tickler-invoice-mark-paid.1",
    ] {
        assert!(
            generated.iter().any(|g| g == page),
            "{page} in {generated:?}"
        );
    }
    // A man page with a bad directory says where and what.
    let out = Command::new(BIN)
        .args(["man", "/proc/nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("error: cannot create the directory /proc/nope"),
        "{}",
        stderr(&out)
    );
}

/// `deploy/install.sh` into a staging root: binary, unit pointed at PREFIX, sysusers, config
/// and templates, completions and man pages; a second run keeps the admin's config and puts the
/// shipped one next to it; `--uninstall` removes what it installed and keeps /etc/tickler.
#[test]
fn install_sh_installs_upgrades_and_uninstalls_into_a_staging_root() {
    let root = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(repo("deploy/install.sh"))
            .args(args)
            .env("DESTDIR", root.path())
            .env("PREFIX", "/opt/tickler")
            .env("TICKLER_BIN", BIN)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let at = |p: &str| root.path().join(p.trim_start_matches('/'));
    for f in [
        "/opt/tickler/bin/tickler",
        "/etc/systemd/system/tickler.service",
        "/usr/lib/sysusers.d/tickler.conf",
        "/etc/tickler/config.toml",
        "/etc/tickler/templates/friendly.j2",
        "/etc/tickler/holidays/za-2026-2027.toml",
        "/opt/tickler/share/bash-completion/completions/tickler",
        "/opt/tickler/share/zsh/site-functions/_tickler",
        "/opt/tickler/share/fish/vendor_completions.d/tickler.fish",
        "/opt/tickler/share/man/man1/tickler.1",
        "/opt/tickler/share/man/man1/tickler-tasks-enqueue.1",
    ] {
        assert!(at(f).exists(), "{f} installed");
    }
    let unit = std::fs::read_to_string(at("/etc/systemd/system/tickler.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/opt/tickler/bin/tickler --config /etc/tickler/config.toml run")
    );
    assert!(unit.contains(
        "ExecReload=/opt/tickler/bin/tickler --config /etc/tickler/config.toml check --quiet\n\
         ExecReload=/bin/kill -HUP $MAINPID\n"
    ));
    assert!(!unit.contains("/usr/bin/tickler"));
    // The installed config validates as shipped.
    let check = Command::new(at("/opt/tickler/bin/tickler"))
        .arg("--config")
        .arg(at("/etc/tickler/config.toml"))
        .arg("check")
        .current_dir(root.path())
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));

    std::fs::write(at("/etc/tickler/config.toml"), "# mine\n").unwrap();
    let out = run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(at("/etc/tickler/config.toml")).unwrap(),
        "# mine\n"
    );
    assert!(at("/etc/tickler/config.toml.new").exists());
    assert!(stdout(&out).contains("kept"), "{}", stdout(&out));

    let out = run(&["--uninstall"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!at("/opt/tickler/bin/tickler").exists());
    assert!(!at("/etc/systemd/system/tickler.service").exists());
    assert!(!at("/opt/tickler/share/man/man1/tickler-run.1").exists());
    assert!(
        at("/etc/tickler/config.toml").exists(),
        "the admin's config is kept"
    );

    let out = run(&["--frobnicate"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown argument `--frobnicate`"),
        "{}",
        stderr(&out)
    );
}
