-- Media (issue 7): every Mux direct upload we create, so that uploads that never
-- got a webhook can be reconciled, a failed upload can be marked, and only the
-- uploader (or an admin) can poll it.
CREATE TABLE mux_uploads (
    upload_id   text        PRIMARY KEY,
    user_id     uuid        NULL REFERENCES users (id) ON DELETE SET NULL,
    target_type text        NOT NULL
                CONSTRAINT mux_uploads_target_type_check
                CHECK (target_type IN ('lesson', 'course', 'level', 'post', 'reply', 'none')),
    target_id   uuid        NULL,
    status      text        NOT NULL DEFAULT 'pending'
                CONSTRAINT mux_uploads_status_check
                CHECK (status IN ('pending', 'ready', 'errored', 'cancelled')),
    asset_id    text        NULL,
    playback_id text        NULL,
    error       text        NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX mux_uploads_pending_idx ON mux_uploads (created_at) WHERE status = 'pending';
CREATE INDEX mux_uploads_asset_id_idx ON mux_uploads (asset_id);
CREATE INDEX mux_uploads_target_idx ON mux_uploads (target_type, target_id);

-- Playback-id lookups (download entitlement checks).
CREATE INDEX posts_mux_playback_id_idx ON posts (mux_playback_id);
CREATE INDEX post_replies_mux_playback_id_idx ON post_replies (mux_playback_id);
CREATE INDEX lessons_mux_playback_id_idx ON lessons (mux_playback_id);
