-- Tether store, SQLite schema v6: the device an audit event concerns, and indexes for
-- the staff audit views (filter by device, actor or time; newest first by seq).

-- Set by the writer (the server: the event's target when that is a device id, else the
-- `device_id` member of its detail). Events written before this migration get the same
-- rule here.
ALTER TABLE audit_events ADD COLUMN device_id TEXT;

UPDATE audit_events SET device_id = CASE
    WHEN substr(target, 1, 4) = 'dev_' THEN target
    WHEN json_valid(detail) THEN CASE
        WHEN json_type(detail, '$.device_id') = 'text'
             AND substr(json_extract(detail, '$.device_id'), 1, 4) = 'dev_'
            THEN json_extract(detail, '$.device_id')
        END
    END;

CREATE INDEX audit_events_device ON audit_events (device_id, seq);
CREATE INDEX audit_events_actor ON audit_events (actor, seq);
CREATE INDEX audit_events_at ON audit_events (at);
