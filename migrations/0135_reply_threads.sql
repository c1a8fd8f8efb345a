-- Nested replies (API-NEXT.md N4.1): two levels. A reply's parent is always a
-- top-level reply of the same post (the API flattens a reply to a nested
-- reply onto its top-level parent).
--
-- A reply with children is never removed while they exist: deleting it keeps
-- its place as a placeholder (is_deleted, content "[deleted]"), so CASCADE on
-- the parent only acts when a whole post (or user, N3) goes, when the children
-- go too. posts.reply_count counts the post's rows here, placeholders included.
-- Retention: replies live as long as their post.
ALTER TABLE post_replies
    ADD COLUMN parent_reply_id uuid NULL REFERENCES post_replies (id) ON DELETE CASCADE,
    ADD COLUMN is_deleted boolean NOT NULL DEFAULT false;

-- The children of a reply (placeholder clean-up, "has children?").
CREATE INDEX post_replies_parent_reply_id_idx
    ON post_replies (parent_reply_id, created_at)
    WHERE parent_reply_id IS NOT NULL;
