-- Billing lifecycle (API-NEXT.md N2): trials, scheduled downgrades, cancel at
-- period end and the grace period after a failed payment.
ALTER TABLE subscriptions
    ADD COLUMN IF NOT EXISTS cancel_at_period_end   boolean     NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS trial_end              timestamptz NULL,
    ADD COLUMN IF NOT EXISTS scheduled_tier         text        NULL
        CONSTRAINT subscriptions_scheduled_tier_check
        CHECK (scheduled_tier IN ('rookie', 'advanced', 'performer')),
    ADD COLUMN IF NOT EXISTS stripe_schedule_id     text        NULL,
    -- `created` of the newest subscription_schedule.* event applied (the
    -- schedule's fields have their own ordering guard).
    ADD COLUMN IF NOT EXISTS schedule_event_created bigint      NULL,
    -- The first failed payment of the current past_due spell, and the end of
    -- its grace period (PAYMENT_GRACE_DAYS later); both cleared once paid.
    ADD COLUMN IF NOT EXISTS past_due_since         timestamptz NULL,
    ADD COLUMN IF NOT EXISTS grace_until            timestamptz NULL;

-- Stripe's `unpaid` (retries exhausted) is mirrored as such: no access.
ALTER TABLE subscriptions DROP CONSTRAINT IF EXISTS subscriptions_status_check;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_status_check
    CHECK (status IN ('active', 'past_due', 'canceled', 'incomplete', 'trialing', 'unpaid'));

CREATE INDEX IF NOT EXISTS subscriptions_stripe_schedule_id_idx
    ON subscriptions (stripe_schedule_id) WHERE stripe_schedule_id IS NOT NULL;

-- Emails that have had a free trial, normalised (lowercase, `+tag` removed,
-- dots removed for gmail.com/googlemail.com, which count as one domain). No
-- foreign key: the claim outlives a deleted account, so re-registering does
-- not earn a second trial.
CREATE TABLE IF NOT EXISTS trial_claims (
    normalized_email       text        PRIMARY KEY,
    user_id                uuid        NULL,
    stripe_subscription_id text        NULL,
    claimed_at             timestamptz NOT NULL DEFAULT now()
);

-- Every verified Stripe event is recorded with its type and creation time,
-- including the ones that change nothing (checkout.session.expired).
ALTER TABLE processed_webhook_events
    ADD COLUMN IF NOT EXISTS kind    text   NULL,
    ADD COLUMN IF NOT EXISTS created bigint NULL;
