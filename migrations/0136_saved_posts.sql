-- Saved posts (API-NEXT.md N4.2): a user's bookmarks, most recently saved
-- first. Retention: a row lives as long as its user and its post (both
-- CASCADE: deleting a post or a user, N3, removes the bookmarks with them).
CREATE TABLE saved_posts (
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    post_id    uuid        NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, post_id)
);

-- The saved list: newest first per user, keyset-capable.
CREATE INDEX saved_posts_user_newest_idx ON saved_posts (user_id, created_at DESC, post_id DESC);
-- The cascade from a deleted post.
CREATE INDEX saved_posts_post_id_idx ON saved_posts (post_id);
