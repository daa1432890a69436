//! What the benchmarks share: command-line options, CPU time from `/proc`, PostgreSQL URLs,
//! the seeding of billing tables.

#![allow(dead_code)]

use chrono::{Days, NaiveDate, Utc};
use tickler::store::billing::{NewCustomer, NewInvoice, NewSubscription};
use tickler::store::{Store, ts};

pub fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The `PART [N]` of a benchmark that does one part of a message N times (default 2,000),
/// after the `--bench` cargo passes.
pub fn part_and_count(default: &str) -> (String, usize) {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let part = args.first().cloned().unwrap_or_else(|| default.into());
    let n = args
        .get(1)
        .map(|a| a.parse().expect("N: a count of messages"))
        .unwrap_or(2_000);
    (part, n)
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

/// CPU of this process's threads whose name starts with `prefix` (as `/proc` shows it, at
/// most 15 bytes), in µs, to the nanosecond: each thread's CPU clock (the clock id
/// `pthread_getcpuclockid` gives, made from the thread's id). A thread that ended is no
/// longer counted.
pub fn threads_cpu(prefix: &str) -> f64 {
    let mut total = 0.0;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<i32>().ok()) else {
            continue;
        };
        let named = std::fs::read_to_string(e.path().join("comm"))
            .is_ok_and(|name| name.starts_with(prefix));
        if !named {
            continue;
        }
        // Linux's per-thread CPU clock: `(!tid << 3) | CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED`.
        let clock = (!tid << 3) | 4 | 2;
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime only writes the struct it is given; an unknown clock (the
        // thread ended) is an error, not undefined behaviour.
        if unsafe { libc::clock_gettime(clock, &mut t) } == 0 {
            total += t.tv_sec as f64 * 1e6 + t.tv_nsec as f64 / 1e3;
        }
    }
    total
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

/// A random-looking id, the same at every run (so the b-trees a seed builds, and what the
/// benchmarks count on them, do not change from run to run): `kind` and `n` mixed by
/// SplitMix64, shaped as a version 4 UUID.
pub fn seeded_id(kind: u64, n: usize) -> String {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let high = mix(kind << 40 ^ n as u64);
    let low = mix(high);
    uuid::Builder::from_random_bytes(((high as u128) << 64 | low as u128).to_be_bytes())
        .into_uuid()
        .to_string()
}

/// Seeds `customers` customers, a monthly subscription each, and `invoices` open invoices
/// spread over them (`invoices / customers` months each, unique per `invoices_period`), invoice
/// `j` due `due_offset(j)` days from `today`. Returns the invoices' ids, in `j` order.
pub async fn seed(
    store: &Store,
    today: NaiveDate,
    customers: usize,
    invoices: usize,
    due_offset: impl Fn(usize) -> i64,
) -> Vec<String> {
    let count = (customers, invoices);
    let customers: Vec<NewCustomer> = (0..count.0)
        .map(|i| NewCustomer {
            id: seeded_id(1, i),
            org_id: None,
            name: format!("Customer{i} Surname{}", i % 97),
            email: Some(format!("customer{i}@example.com")),
            phone: Some(format!("+2782{:07}", i)),
            timezone: None,
            locale: "en".into(),
            provider_customer_id: None,
        })
        .collect();
    let subscriptions: Vec<NewSubscription> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| NewSubscription {
            id: seeded_id(2, i),
            customer_id: c.id.clone(),
            description: format!("Flat {}, Long Street", i % 500),
            amount_minor: 1_250_000,
            currency: "ZAR".into(),
            interval: "monthly".into(),
            anchor_day: 1,
            start_date: today - Days::new(400),
            end_date: None,
            payment_terms_days: 7,
            auto_invoice: false,
        })
        .collect();
    let issued = ts(Utc::now() - chrono::TimeDelta::days(20));
    // Each subscription gets 10 invoices, one per (made-up) month, unique per the
    // `invoices_period` index; the due dates are spread as `due_offset` says.
    let mut invoices: Vec<NewInvoice> = (0..count.1)
        .map(|j| {
            let c = j % count.0;
            let month = (j / count.0) as u32;
            let period_start =
                NaiveDate::from_ymd_opt(2024 + (month / 12) as i32, month % 12 + 1, 1).unwrap();
            let days = due_offset(j);
            let due = if days >= 0 {
                today + Days::new(days as u64)
            } else {
                today - Days::new(days.unsigned_abs())
            };
            NewInvoice {
                id: seeded_id(3, j),
                number: String::new(),
                customer_id: customers[c].id.clone(),
                subscription_id: Some(subscriptions[c].id.clone()),
                period_start: Some(period_start),
                period_end: Some(period_start + Days::new(27)),
                amount_minor: 10_000 + (j as i64 * 7919) % 2_000_000,
                currency: "ZAR".into(),
                issued_at: issued.clone(),
                due_date: due,
                status: "open".into(),
                paid_at: None,
                provider_ref: None,
                escalation_level: 0,
                escalated_at: None,
            }
        })
        .collect();
    let counts = store
        .import(&customers, &subscriptions, &mut invoices, "INV-")
        .await
        .unwrap();
    assert_eq!(
        counts,
        (count.0 as u64, count.0 as u64, count.1 as u64),
        "seeding"
    );
    invoices.into_iter().map(|i| i.id).collect()
}
