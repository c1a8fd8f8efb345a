-- Reports and moderation (API-NEXT.md N4.4).
--
-- A post or reply that REPORTS_TO_HIDE distinct users report (open reports)
-- is hidden at once, in the transaction of the report that reaches the
-- threshold; an admin resolves the reports (hide, unhide, dismiss, delete).
-- Hidden content is left out for everyone but its author and admins.
ALTER TABLE posts ADD COLUMN is_hidden boolean NOT NULL DEFAULT false;
ALTER TABLE post_replies ADD COLUMN is_hidden boolean NOT NULL DEFAULT false;

-- Retention: a report lives as long as its content (post_id CASCADE; a
-- deleted reply takes its reports with it, in the same transaction) and its
-- reporter (CASCADE, N3). Resolved reports stay for the admins' history; the
-- audit log (report.resolve) keeps the decision for good.
CREATE TABLE content_reports (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    target_type varchar(10) NOT NULL CHECK (target_type IN ('post', 'reply')),
    -- The post's or the reply's id.
    target_id   uuid        NOT NULL,
    post_id     uuid        NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    reporter_id uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    reason      varchar(20) NOT NULL
                CHECK (reason IN ('spam', 'harassment', 'inappropriate', 'other')),
    note        text        NULL CHECK (char_length(note) <= 500),
    status      varchar(10) NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    resolution  varchar(10) NULL CHECK (resolution IN ('hide', 'unhide', 'dismiss', 'delete')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz NULL,
    resolved_by uuid        NULL REFERENCES users (id) ON DELETE SET NULL
);

-- One open report per reporter and target (a second one is a 409).
CREATE UNIQUE INDEX content_reports_one_open_idx
    ON content_reports (reporter_id, target_type, target_id) WHERE status = 'open';
-- Counting and resolving the open reports of a target.
CREATE INDEX content_reports_target_open_idx
    ON content_reports (target_type, target_id) WHERE status = 'open';
-- The admin queue: by status, newest first.
CREATE INDEX content_reports_queue_idx ON content_reports (status, created_at DESC, id DESC);
-- The cascades.
CREATE INDEX content_reports_post_id_idx ON content_reports (post_id);
CREATE INDEX content_reports_reporter_id_idx ON content_reports (reporter_id);
CREATE INDEX content_reports_resolved_by_idx ON content_reports (resolved_by)
    WHERE resolved_by IS NOT NULL;

-- The feed of viewers who see no hidden post (everyone but admins and the
-- authors of hidden posts): `WHERE NOT is_hidden` in page order.
CREATE INDEX posts_visible_created_at_id_idx ON posts (created_at DESC, id DESC)
    WHERE NOT is_hidden;
CREATE INDEX posts_visible_post_type_created_at_id_idx
    ON posts (post_type, created_at DESC, id DESC) WHERE NOT is_hidden;
-- "Does this viewer author a hidden post?" (the feed's cache bypass).
CREATE INDEX posts_hidden_user_idx ON posts (user_id) WHERE is_hidden;
