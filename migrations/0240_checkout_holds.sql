-- N5.6 Guild Master seats: every checkout session records a hold. A
-- performer hold takes a seat while it is `reserved` (the seat was checked,
-- Stripe not called yet) or `open` (the Stripe session exists) and not past
-- `expires_at` (created + 30 min); the checkout.session.completed / .expired
-- webhooks and POST /api/payments/cancel-checkout close it.
-- Retention (N5.7): rows older than 30 days are deleted by the worker's daily
-- maintenance (payments::prune_checkout_holds). Account deletion deletes the
-- user's holds (privacy::deletion); deleting the users row cascades.
CREATE TABLE checkout_holds (
    id                uuid PRIMARY KEY,
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tier              varchar(20) NOT NULL
                          CONSTRAINT checkout_holds_tier_check
                          CHECK (tier IN ('advanced', 'performer')),
    stripe_session_id varchar(255) NULL,
    status            varchar(20) NOT NULL DEFAULT 'reserved'
                          CONSTRAINT checkout_holds_status_check
                          CHECK (status IN ('reserved', 'open', 'completed', 'expired', 'canceled')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL
);

-- The seat count: live performer holds.
CREATE INDEX checkout_holds_tier_status_expires_idx
    ON checkout_holds (tier, status, expires_at);
-- The webhooks find a hold by its Stripe session.
CREATE INDEX checkout_holds_stripe_session_idx
    ON checkout_holds (stripe_session_id) WHERE stripe_session_id IS NOT NULL;
-- cancel-checkout and account deletion: a user's holds.
CREATE INDEX checkout_holds_user_status_idx ON checkout_holds (user_id, status);
-- Retention.
CREATE INDEX checkout_holds_created_idx ON checkout_holds (created_at);

-- The seat count's other half: Guild Master subscriptions (N6.5) are
-- performer rows by status.
CREATE INDEX subscriptions_performer_status_idx
    ON subscriptions (status, grace_until) WHERE tier = 'performer';
