-- The audit list filtered by target_id alone ("what happened to this lesson?"):
-- ids are unique across target types in practice (uuids), so the target_id
-- comes first; the (target_type, target_id) index keeps serving a filter by
-- type.
CREATE INDEX audit_log_target_id_idx ON audit_log (target_id, created_at DESC, id DESC);
