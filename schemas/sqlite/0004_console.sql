-- The console's people (issue 19): users with argon2id password hashes and TOTP, their
-- one-time recovery codes, server-side sessions (a restart or another node keeps them),
-- and the failed-login counters of the lock-out. Times are BIGINT Unix milliseconds;
-- flags are BIGINT 0/1, the same on SQLite and PostgreSQL.

CREATE TABLE users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    login          TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('operator', 'supervisor', 'card_department', 'security', 'admin')),
    operator       TEXT,
    password_hash  TEXT NOT NULL,
    -- base32; set at enrolment, confirmed by the first code.
    totp_secret    TEXT,
    totp_enrolled  BIGINT NOT NULL DEFAULT 0,
    -- The last step whose code was accepted: no code is accepted twice.
    totp_last_step BIGINT,
    disabled_at    BIGINT,
    created_at     BIGINT NOT NULL
);

CREATE TABLE user_recovery_codes (
    user_id   BIGINT NOT NULL REFERENCES users (id),
    code_hash TEXT NOT NULL,
    used_at   BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- A session is the SHA-256 of its cookie's secret: a copy of the table opens nothing.
CREATE TABLE console_sessions (
    id_hash        TEXT PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES users (id),
    csrf           TEXT NOT NULL,
    -- 1 until the second factor is given (the session opens nothing but the code page).
    factor_due     BIGINT NOT NULL,
    address        TEXT,
    created_at     BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    ended_at       BIGINT
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);

-- Keyed 'login:<login>' and 'addr:<address>'.
CREATE TABLE login_failures (
    key          TEXT PRIMARY KEY,
    count        BIGINT NOT NULL,
    since        BIGINT NOT NULL,
    locked_until BIGINT
);
