//! What the benchmarks share: command-line options, CPU time from `/proc`, PostgreSQL URLs.

#![allow(dead_code)]

pub fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// User + system CPU of a process from `/proc/PID/stat`, in µs (clock-tick resolution).
pub fn proc_cpu(stat: &str) -> Option<f64> {
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let t = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(t / ticks * 1e6)
}

/// Busy CPU of the whole host (every core) from `/proc/stat`, in µs.
pub fn host_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: f64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| fields.get(*i))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    busy / ticks * 1e6
}

/// CPU of every `postgres` process of the host (the bench's throwaway cluster), in µs. A
/// backend that exits during the measurement takes its CPU with it, so this is a lower bound.
pub fn postgres_cpu() -> f64 {
    let mut total = 0.0;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let name = e.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(stat) = std::fs::read_to_string(e.path().join("stat"))
                && stat.contains("(postgres)")
            {
                total += proc_cpu(&stat).unwrap_or(0.0);
            }
        }
    }
    total
}

pub fn pg_url_with_db(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let (authority, query) = match rest.find('/') {
        Some(i) => {
            let path = &rest[i..];
            (
                &rest[..i],
                path.find('?').map(|q| &path[q..]).unwrap_or_default(),
            )
        }
        None => (
            rest.split('?').next().unwrap_or(rest),
            rest.find('?').map(|q| &rest[q..]).unwrap_or_default(),
        ),
    };
    format!("{scheme}://{authority}/{db}{query}")
}
