-- Learning: one skill-tree edge per (from, to) pair, so that "Edge already
-- exists" is guarded by a unique key and not only by a read before the write.
-- Older data may hold duplicates: keep one row of each pair.
DELETE FROM level_edges a
USING level_edges b
WHERE a.from_level_id = b.from_level_id
  AND a.to_level_id = b.to_level_id
  AND a.ctid > b.ctid;

CREATE UNIQUE INDEX level_edges_from_to_key ON level_edges (from_level_id, to_level_id);
