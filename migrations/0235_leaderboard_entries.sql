-- Community leaderboards (API-2026-05.md N5.4, N5.7).
--
-- A snapshot, rebuilt as a whole by the worker's `leaderboard_rebuild` cron
-- (every 60 s; `community::leaderboard::rebuild`): one set-based INSERT per
-- (period, category) board plus the legacy ranking of API.md §4.9 (category
-- 'legacy', period 'all_time', top 3 by post count), all in one transaction
-- after deleting the previous snapshot. Public reads only look rows up by
-- these indexes; they never aggregate.
--
-- Retention: rebuilt, never grows (at most one row per user and board, only
-- scores > 0). Account deletion deletes the user's rows (privacy::deletion);
-- users are tombstoned, never hard-deleted, so there is no FK: a foreign key
-- would make every rebuild share-lock the users it ranks, and the rebuild
-- leaves out tombstoned users anyway.
CREATE TABLE leaderboard_entries (
    period   varchar(10) NOT NULL
             CHECK (period IN ('weekly', 'monthly', 'all_time')),
    category varchar(10) NOT NULL
             CHECK (category IN ('overall', 'helpful', 'creative', 'active', 'legacy')),
    user_id  uuid        NOT NULL,
    score    bigint      NOT NULL CHECK (score > 0),
    -- 1-based rank in the board's order (score DESC, user_id ASC).
    position integer     NOT NULL CHECK (position > 0),
    -- A board's page: ORDER BY position LIMIT n; max(position) = its size.
    PRIMARY KEY (period, category, position)
);

-- my-rank: "how many entries are ahead of this score" (a seek, not a count).
CREATE INDEX leaderboard_entries_board_score_idx
    ON leaderboard_entries (period, category, score DESC, user_id);
-- The caller's own entry, and account deletion.
CREATE UNIQUE INDEX leaderboard_entries_user_board_key
    ON leaderboard_entries (user_id, period, category);

-- When the snapshot was last built (one row; absent until the first build).
CREATE TABLE leaderboard_snapshot (
    singleton boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    built_at  timestamptz NOT NULL
);

-- active_now: profiles with a streak touch in the last 24 h.
CREATE INDEX user_profiles_last_login_date_idx
    ON user_profiles (last_login_date) WHERE last_login_date IS NOT NULL;
-- The weekly and monthly boards read reactions and replies by creation time.
CREATE INDEX post_reactions_created_at_idx ON post_reactions (created_at);
CREATE INDEX post_replies_created_at_idx ON post_replies (created_at);
