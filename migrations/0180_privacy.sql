-- Account trust and privacy, part B (API-NEXT.md N3): data exports and
-- account deletion.

-- Set when the account's deletion is requested: from then on the account
-- cannot sign in and its tokens are refused (the request's user lookup checks
-- it, so this costs no extra query). `deleted_at` is set when the deletion
-- job has finished and the row is a tombstone.
ALTER TABLE users
    ADD COLUMN deletion_requested_at timestamptz NULL,
    ADD COLUMN deleted_at            timestamptz NULL;

-- One row per requested export. The ZIP lives in object storage at
-- `object_key` until `expires_at`; the daily maintenance deletes expired
-- objects (`cleaned_at`) and rows older than 90 days. An account deletion
-- deletes the user's rows and objects.
CREATE TABLE data_exports (
    id          uuid        PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status      text        NOT NULL DEFAULT 'pending'
                CONSTRAINT data_exports_status_check
                CHECK (status IN ('pending', 'ready', 'failed')),
    object_key  text        NULL,
    error       text        NULL,
    created_at  timestamptz NOT NULL,
    ready_at    timestamptz NULL,
    expires_at  timestamptz NULL,
    cleaned_at  timestamptz NULL
);

CREATE INDEX data_exports_user_newest_idx ON data_exports (user_id, created_at DESC, id DESC);
CREATE INDEX data_exports_to_clean_idx ON data_exports (expires_at)
    WHERE object_key IS NOT NULL AND cleaned_at IS NULL;
CREATE INDEX data_exports_created_idx ON data_exports (created_at);

-- The progress of one account deletion (a resumable job): each step records
-- when it finished, so a job killed halfway resumes where it stopped. The row
-- stays with the tombstone (it holds no personal data).
CREATE TABLE account_deletions (
    user_id          uuid        PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    requested_at     timestamptz NOT NULL,
    -- The admin who asked for it, or the user themselves.
    requested_by     uuid        NULL,
    requested_ip     inet        NULL,
    stripe_done_at   timestamptz NULL,
    -- The Mux assets still to delete (filled when the Mux step starts).
    mux_assets       text[]      NULL,
    mux_done_at      timestamptz NULL,
    storage_done_at  timestamptz NULL,
    rows_done_at     timestamptz NULL,
    completed_at     timestamptz NULL
);
