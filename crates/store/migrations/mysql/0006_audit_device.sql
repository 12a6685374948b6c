-- Tether store, MySQL/MariaDB schema v6: the device an audit event concerns, and indexes
-- for the staff audit views (filter by device, actor or time; newest first by seq).

-- Set by the writer (the server: the event's target when that is a device id, else the
-- `device_id` member of its detail). Events written before this migration get the same
-- rule here.
ALTER TABLE audit_events
    ADD COLUMN device_id VARCHAR(255) NULL,
    ADD KEY audit_events_device (device_id, seq),
    ADD KEY audit_events_actor (actor, seq),
    ADD KEY audit_events_at (at);

UPDATE audit_events SET device_id = CASE
    WHEN SUBSTRING(target, 1, 4) = 'dev_' AND CHAR_LENGTH(target) <= 255 THEN target
    WHEN JSON_VALID(detail) THEN CASE
        WHEN JSON_TYPE(JSON_EXTRACT(detail, '$.device_id')) = 'STRING'
             AND SUBSTRING(JSON_UNQUOTE(JSON_EXTRACT(detail, '$.device_id')), 1, 4) = 'dev_'
             AND CHAR_LENGTH(JSON_UNQUOTE(JSON_EXTRACT(detail, '$.device_id'))) <= 255
            THEN JSON_UNQUOTE(JSON_EXTRACT(detail, '$.device_id'))
        END
    END;
