-- Waitlist and newsletter broadcasts (`mambo broadcast`).
--
-- A broadcast is identified by `key` (a hash of its audience, template and
-- variables), so running the same command again resumes it instead of starting
-- a new one. Every recipient has one row, unique per broadcast, whose status
-- records what happened: a rerun never sends to a row that is not `pending`.

CREATE TABLE broadcasts (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    key        text        NOT NULL,
    name       text        NOT NULL,
    audience   text        NOT NULL
               CONSTRAINT broadcasts_audience_check
               CHECK (audience IN ('waitlist', 'all', 'students')),
    template   text        NOT NULL,
    vars       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT broadcasts_key_key UNIQUE (key)
);

CREATE TABLE broadcast_recipients (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    broadcast_id uuid        NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    batch        integer     NOT NULL,
    status       text        NOT NULL DEFAULT 'pending'
                 CONSTRAINT broadcast_recipients_status_check
                 CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    -- The address the email went to (filled when it is sent).
    email        text        NULL,
    attempts     integer     NOT NULL DEFAULT 0,
    provider_id  text        NULL,
    error        text        NULL,
    sent_at      timestamptz NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT broadcast_recipients_broadcast_user_key UNIQUE (broadcast_id, user_id)
);

CREATE INDEX broadcast_recipients_batch_idx ON broadcast_recipients (broadcast_id, batch);
CREATE INDEX broadcast_recipients_user_idx ON broadcast_recipients (user_id);
