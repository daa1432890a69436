-- Seed 004's tables (migration 0019_automation_workflows.sql and the tables it alters), as
-- the jobs read them, in the SQLite dialect (the app runs them on Supabase/PostgreSQL; there
-- `BOOLEAN`, `UUID`, `TIMESTAMPTZ`). Times are UTC text as SQLite's datetime() writes it:
-- `YYYY-MM-DD HH:MM:SS`. `job_execution_logs` is not here: tickler writes its own, with the
-- seed's columns, in tickler's database.
--   sqlite3 /tmp/app.db < examples/004-apscheduler/schema.sql

CREATE TABLE profiles (
    id         INTEGER PRIMARY KEY,
    full_name  TEXT NOT NULL,
    email      TEXT,
    phone      TEXT,
    role       TEXT NOT NULL DEFAULT 'student'
);

-- Which students attend which course's sessions.
CREATE TABLE enrollments (
    course_id  INTEGER NOT NULL,
    student_id INTEGER NOT NULL REFERENCES profiles (id),
    PRIMARY KEY (course_id, student_id)
);

CREATE TABLE sessions (
    id                  INTEGER PRIMARY KEY,
    course_id           INTEGER NOT NULL,
    title               TEXT NOT NULL,
    scheduled_at        TEXT NOT NULL,
    meeting_link        TEXT,
    reminder_24h_sent   INTEGER NOT NULL DEFAULT 0,
    reminder_15min_sent INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE recordings (
    id                  INTEGER PRIMARY KEY,
    session_id          INTEGER NOT NULL REFERENCES sessions (id),
    url                 TEXT NOT NULL,
    visible_to_students INTEGER NOT NULL DEFAULT 0,
    notification_sent   INTEGER NOT NULL DEFAULT 0
);

-- One row per student and assignment.
CREATE TABLE assignments (
    id            INTEGER PRIMARY KEY,
    student_id    INTEGER NOT NULL REFERENCES profiles (id),
    title         TEXT NOT NULL,
    deadline      TEXT NOT NULL,
    submitted_at  TEXT,
    reminder_sent INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE payments (
    id            INTEGER PRIMARY KEY,
    student_id    INTEGER NOT NULL REFERENCES profiles (id),
    amount        NUMERIC NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending',   -- pending, paid, failed
    payment_link  TEXT,
    created_at    TEXT NOT NULL DEFAULT (datetime('now')),
    reminder_sent INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE imported_leads (
    id                  INTEGER PRIMARY KEY,
    name                TEXT,
    email               TEXT NOT NULL,
    phone               TEXT,
    status              TEXT NOT NULL DEFAULT 'new',  -- new, contacted, converted
    campaign_id         INTEGER,
    last_contacted_at   TEXT,
    follow_up_day3_sent INTEGER NOT NULL DEFAULT 0,
    follow_up_day7_sent INTEGER NOT NULL DEFAULT 0,
    cta_submission_id   INTEGER,
    converted_at        TEXT
);

-- In-app notifications.
CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL,
    type       TEXT NOT NULL,
    title      TEXT NOT NULL,
    message    TEXT,
    link       TEXT,
    read       INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
