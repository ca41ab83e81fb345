-- Records of the hotline (SPEC §3): the incoming-call journal (Appendix 6), voicemail,
-- callback forms (Table 6.1), the audit log and the API's tokens.
-- Every time is BIGINT milliseconds since the Unix epoch, UTC: the same on SQLite and
-- PostgreSQL, sortable, and converted to the calendar's time zone only for people.
-- Keep this file and ../postgres/0001_records.sql in step: the same tables, columns and
-- constraints, only the dialect differs.

CREATE TABLE journal_counters (
    year     BIGINT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);

CREATE TABLE journal_entries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    year             BIGINT NOT NULL,
    seq              BIGINT NOT NULL,
    call_id          TEXT UNIQUE,
    arrived_at       BIGINT NOT NULL,
    caller_name      TEXT,
    caller_status    TEXT CHECK (caller_status IN ('individual', 'legal')),
    phone            TEXT NOT NULL,
    phone_key        TEXT NOT NULL,
    callback_at      BIGINT,
    content          TEXT,
    forwarded_to     TEXT,
    forwarded_at     BIGINT,
    done_at          BIGINT,
    appeal_type      TEXT CHECK (appeal_type IN ('question', 'complaint', 'application', 'proposal', 'atm_incident', 'other')),
    disposition      TEXT NOT NULL CHECK (disposition IN ('in_progress', 'answered', 'voicemail', 'after_hours_voicemail', 'abandoned', 'failed')),
    answered_at      BIGINT,
    ended_at         BIGINT,
    wait_ms          BIGINT,
    operator         TEXT,
    recording        TEXT,
    repeat_of        BIGINT REFERENCES journal_entries (id),
    search_text      TEXT NOT NULL DEFAULT '',
    last_activity_at BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (year, seq)
);
CREATE INDEX journal_arrived ON journal_entries (arrived_at, id);
CREATE INDEX journal_phone ON journal_entries (phone_key, arrived_at);
CREATE INDEX journal_operator ON journal_entries (operator, arrived_at, id);
CREATE INDEX journal_disposition ON journal_entries (disposition, arrived_at, id);
CREATE INDEX journal_activity ON journal_entries (last_activity_at);
CREATE INDEX journal_repeat ON journal_entries (repeat_of);

CREATE TABLE voicemails (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    journal_id   BIGINT NOT NULL REFERENCES journal_entries (id),
    phone        TEXT NOT NULL,
    arrived_at   BIGINT NOT NULL,
    file         TEXT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    empty        BIGINT NOT NULL DEFAULT 0,
    after_hours  BIGINT NOT NULL DEFAULT 0,
    deadline_at  BIGINT NOT NULL,
    transcript   TEXT,
    processed_by TEXT,
    processed_at BIGINT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX voicemails_journal ON voicemails (journal_id);

-- The call's (latest) voicemail, kept on the entry so that pages and the export join it
-- by key instead of searching voicemails for every row.
ALTER TABLE journal_entries ADD COLUMN voicemail_id BIGINT REFERENCES voicemails (id);
CREATE INDEX voicemails_open ON voicemails (processed_at, deadline_at);

CREATE TABLE callback_forms (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    journal_id       BIGINT REFERENCES journal_entries (id),
    voicemail_id     BIGINT REFERENCES voicemails (id),
    called_at        BIGINT NOT NULL,
    caller_name      TEXT,
    phone            TEXT NOT NULL,
    caller_status    TEXT CHECK (caller_status IN ('individual', 'legal')),
    question         TEXT NOT NULL,
    convenient_at    BIGINT NOT NULL,
    convenient_note  TEXT,
    operator         TEXT NOT NULL,
    operator_comment TEXT,
    assigned_to      TEXT,
    sent_at          BIGINT,
    called_back_at   BIGINT,
    called_back_by   TEXT,
    result           TEXT,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX callback_open ON callback_forms (called_back_at, convenient_at);
CREATE INDEX callback_journal ON callback_forms (journal_id);

CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    entity    TEXT NOT NULL,
    entity_id BIGINT NOT NULL,
    action    TEXT NOT NULL,
    field     TEXT,
    old_value TEXT,
    new_value TEXT
);
CREATE INDEX audit_entity ON audit_log (entity, entity_id, id);

CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('operator', 'supervisor', 'card_department', 'security', 'admin')),
    operator   TEXT,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- The journal's text filter is `search_text LIKE '%term%'`; this trigram index finds the
-- candidate rows for terms of 3 characters or more (FTS5 with the trigram tokenizer, kept
-- in step with journal_entries by the triggers), so a rare word does not scan the table.
CREATE VIRTUAL TABLE journal_search USING fts5 (
    search_text, content = 'journal_entries', content_rowid = 'id', tokenize = 'trigram'
);
CREATE TRIGGER journal_search_insert AFTER INSERT ON journal_entries BEGIN
    INSERT INTO journal_search (rowid, search_text) VALUES (new.id, new.search_text);
END;
CREATE TRIGGER journal_search_delete AFTER DELETE ON journal_entries BEGIN
    INSERT INTO journal_search (journal_search, rowid, search_text)
        VALUES ('delete', old.id, old.search_text);
END;
CREATE TRIGGER journal_search_update AFTER UPDATE OF search_text ON journal_entries BEGIN
    INSERT INTO journal_search (journal_search, rowid, search_text)
        VALUES ('delete', old.id, old.search_text);
    INSERT INTO journal_search (rowid, search_text) VALUES (new.id, new.search_text);
END;
