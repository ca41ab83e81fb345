-- Quick answers (issue 19, regulation §6.3 footnote 2): reference texts for operators,
-- kept by supervisors; changes are in audit_log (entity 'quick_answer').
CREATE TABLE quick_answers (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    topic      TEXT NOT NULL CHECK (topic IN ('rates', 'offices', 'holidays', 'other')),
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
