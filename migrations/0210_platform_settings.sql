-- N6.1: the platform settings, one row. `doc` holds only what an admin set
-- (a key missing from it takes its seed value in core/src/settings.rs, so a
-- release that adds a key needs no data migration). `updated_by` has no
-- foreign key: the audit log keeps the actor. One row, no growth.
CREATE TABLE platform_settings (
    id          smallint    PRIMARY KEY CHECK (id = 1),
    doc         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    revision    bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz,
    updated_by  uuid
);
INSERT INTO platform_settings (id) VALUES (1);

-- The settings' audit rows have no target id (there is one settings row).
ALTER TABLE audit_log ALTER COLUMN target_id DROP NOT NULL;
