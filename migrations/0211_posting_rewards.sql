-- N6.4 posting rewards.
-- A post is judged for a reward once: a lab post at creation, a stage post
-- when the server first attaches a ready video to it (a stage post created
-- with client-supplied video ids is judged, and never paid, at creation).
ALTER TABLE posts ADD COLUMN reward_judged_at timestamptz NULL;
-- Old posts were never eligible: judge them now so a later attach pays nothing.
UPDATE posts SET reward_judged_at = created_at;

-- At most one reward and one clawback per post.
CREATE UNIQUE INDEX clave_transactions_post_reward_once
    ON clave_transactions (reference_id) WHERE reason = 'post_reward';
CREATE UNIQUE INDEX clave_transactions_post_reward_clawback_once
    ON clave_transactions (reference_id) WHERE reason = 'post_reward_clawback';
-- The daily cap and the cooldown: an author's rewards by time.
CREATE INDEX clave_transactions_user_reason_created_idx
    ON clave_transactions (user_id, reason, created_at);
