-- In-app notifications (API-NEXT.md N1).
--
-- Retention: the daily maintenance deletes read notifications older than 90
-- days and all notifications older than 365 days (notifications::prune).
-- A user's deletion removes their notifications (CASCADE); actor_id has no FK
-- so a recipient keeps the history when the actor is deleted.
CREATE TABLE notifications (
    id             uuid         PRIMARY KEY,
    user_id        uuid         NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    actor_id       uuid         NULL,
    type           varchar(50)  NOT NULL,
    title          varchar(200) NOT NULL,
    message        text         NOT NULL,
    reference_type varchar(50)  NULL,
    reference_id   varchar(100) NULL,
    is_read        boolean      NOT NULL DEFAULT false,
    created_at     timestamptz  NOT NULL DEFAULT now(),
    -- Events that must notify once ever (one reaction_received per actor and
    -- post, one course_published per world) carry a key unique per recipient.
    dedup_key      text         NULL
);

-- The bell's page: newest first per user.
CREATE INDEX notifications_user_newest_idx ON notifications (user_id, created_at DESC, id DESC);
-- The polled unread count: an index-only count over the user's unread rows.
CREATE INDEX notifications_user_unread_idx ON notifications (user_id) WHERE NOT is_read;
CREATE UNIQUE INDEX notifications_user_dedup_idx ON notifications (user_id, dedup_key)
    WHERE dedup_key IS NOT NULL;
-- Retention scans by age.
CREATE INDEX notifications_created_idx ON notifications (created_at);

-- Per-user preferences; no row means the defaults (every type on, daily digest).
CREATE TABLE notification_preferences (
    user_id        uuid        PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- {"<type>": false, ...}: only the types a user changed.
    in_app         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    email_digest   text        NOT NULL DEFAULT 'daily'
                   CONSTRAINT notification_preferences_digest_check
                   CHECK (email_digest IN ('off', 'daily', 'weekly')),
    -- The newest notification time covered by the last digest sent.
    last_digest_at timestamptz NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- A world's first publication: the course_published fan-out runs once per world.
CREATE TABLE course_publications (
    world_id      uuid        PRIMARY KEY REFERENCES worlds (id) ON DELETE CASCADE,
    published_by  uuid        NULL,
    published_at  timestamptz NOT NULL DEFAULT now(),
    fanned_out_at timestamptz NULL
);
-- Worlds already published before notifications existed were announced then.
INSERT INTO course_publications (world_id, published_at, fanned_out_at)
SELECT id, now(), now() FROM worlds WHERE is_published;
