-- Stripe webhooks may arrive out of order. Each subscription row remembers the
-- `created` time (unix seconds) of the newest Stripe event (or local change)
-- that set its state; older events never overwrite a newer state.
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS stripe_event_created bigint NULL;
