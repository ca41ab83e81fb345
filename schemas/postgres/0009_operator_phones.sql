-- Where each operator's calls ring (issue 21): their SIP phone, the console's browser
-- phone, or both. An operator without a row is rung on their SIP phone.
CREATE TABLE operator_phones (
    extension  TEXT PRIMARY KEY,
    ring_at    TEXT NOT NULL CHECK (ring_at IN ('phone', 'browser', 'both')),
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
