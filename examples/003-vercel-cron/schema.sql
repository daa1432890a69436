-- Seed 003's tables (Flavor Entertainers), as its jobs read them, in the SQLite dialect
-- (the app runs them on Supabase/PostgreSQL; there `BOOLEAN`, `TIMESTAMPTZ` and `now()`).
-- Times are UTC text as SQLite's datetime() writes it: `YYYY-MM-DD HH:MM:SS`.
--   sqlite3 /tmp/app.db < examples/003-vercel-cron/schema.sql

CREATE TABLE clients (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER,
    name       TEXT NOT NULL,
    email      TEXT,
    phone      TEXT
);

CREATE TABLE performers (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER,
    name       TEXT NOT NULL,
    email      TEXT,
    phone      TEXT
);

CREATE TABLE bookings (
    id                  INTEGER PRIMARY KEY,
    client_id           INTEGER NOT NULL REFERENCES clients (id),
    performer_id        INTEGER REFERENCES performers (id),
    event_date          TEXT NOT NULL,                    -- when the event starts
    status              TEXT NOT NULL DEFAULT 'pending',  -- pending, confirmed, cancelled, completed
    deposit_paid        INTEGER NOT NULL DEFAULT 0,
    balance_amount      NUMERIC NOT NULL DEFAULT 0,       -- outstanding balance
    balance_due_date    TEXT,
    reminder_sent       INTEGER NOT NULL DEFAULT 0,       -- the 24 h reminder went out
    payment_reminder_sent INTEGER NOT NULL DEFAULT 0,     -- the balance reminder went out
    created_at          TEXT NOT NULL DEFAULT (datetime('now'))
);

-- In-app notifications, per user.
CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER,
    type       TEXT NOT NULL,
    title      TEXT NOT NULL,
    message    TEXT,
    read       INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);

CREATE TABLE otp_codes (
    id         INTEGER PRIMARY KEY,
    phone      TEXT NOT NULL,
    code       TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

CREATE TABLE audit_logs (
    id          INTEGER PRIMARY KEY,
    action      TEXT NOT NULL,
    entity_type TEXT,
    entity_id   INTEGER,
    severity    TEXT NOT NULL DEFAULT 'info',             -- info, warning, critical
    details     TEXT,
    created_at  TEXT NOT NULL DEFAULT (datetime('now'))
);
