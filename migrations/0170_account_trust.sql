-- Account trust, part A (API-NEXT.md N3): email verification and signing out
-- everywhere.

-- Every account that exists before this change is treated as verified, so
-- nobody who can post today is locked out by the deploy. New email
-- registrations start unverified (the column's default stays false); Google
-- sign-ins are verified when they are created or linked.
UPDATE users SET is_verified = true WHERE NOT is_verified;

-- Tokens issued before this instant are refused (logout-all, a password change
-- or reset). NULL: nothing revoked. The request's user lookup reads it with the
-- row it already loads, so revocation costs no extra query.
ALTER TABLE users ADD COLUMN tokens_valid_after timestamptz NULL;

-- One row per verification link sent: the link is a signed token naming the
-- row, and using it marks the row, so each link works once. Rows are deleted
-- by the daily maintenance a week after they expire, and with their user.
CREATE TABLE email_verifications (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz NULL
);

CREATE INDEX email_verifications_user_idx ON email_verifications (user_id);
CREATE INDEX email_verifications_expires_idx ON email_verifications (expires_at);
