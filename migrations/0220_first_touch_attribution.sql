-- First-touch attribution (API-2026-05.md N5.1): what brought a person to the
-- school, written once when registration or the waitlist creates the account
-- (a value already set is never overwritten), never shown to the user, and
-- cleared by account deletion (N3, N5.7). One row per profile, so no index
-- and no growth of its own.
ALTER TABLE user_profiles
    ADD COLUMN first_touch_fbclid      varchar(255)  NULL,
    ADD COLUMN first_touch_utm         jsonb         NULL,
    ADD COLUMN first_touch_landing_url varchar(500)  NULL,
    ADD COLUMN first_touch_referrer    varchar(1000) NULL,
    ADD COLUMN first_touch_at          timestamptz   NULL;
