-- Voicemail transcription jobs (SPEC §2.7), the classifier's suggestion on the message,
-- and the notifications outbox (§2.6, §3.2). Keep in step with ../postgres/0002_transcription_notify.sql.

-- One job per message. A restart finds 'running' jobs of the crashed process and puts them
-- back to 'pending'; 'failed' keeps its error text until someone retries it.
CREATE TABLE transcription_jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    voicemail_id    BIGINT NOT NULL UNIQUE REFERENCES voicemails (id),
    status          TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    error           TEXT,
    next_attempt_at BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT,
    audio_ms        BIGINT,
    elapsed_ms      BIGINT
);
CREATE INDEX transcription_jobs_due ON transcription_jobs (status, next_attempt_at, id);

-- What the keyword classifier suggests to the operator who processes the message:
-- atm_fault / atm_security / other, the category's code, the matched words (JSON array).
ALTER TABLE voicemails ADD COLUMN suggested_kind TEXT
    CHECK (suggested_kind IN ('atm_fault', 'atm_security', 'other'));
ALTER TABLE voicemails ADD COLUMN suggested_category TEXT;
ALTER TABLE voicemails ADD COLUMN suggested_words TEXT;
ALTER TABLE voicemails ADD COLUMN transcribed_at BIGINT;

-- One row per notice and sink (an e-mail address or a webhook URL), written in the same
-- transaction as the record it announces. dedupe_key makes a replayed write, a resumed
-- job or a repeated overdue scan enqueue nothing twice.
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key      TEXT NOT NULL UNIQUE,
    event           TEXT NOT NULL,
    channel         TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    entity          TEXT NOT NULL,
    entity_id       BIGINT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX notifications_due ON notifications (status, next_attempt_at, id);
CREATE INDEX notifications_entity ON notifications (entity, entity_id);
