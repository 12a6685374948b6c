-- Tether store, MySQL schema v7: a device's unfinished commands (a session's look for
-- waiting ones, ingest's backpressure count) are found by device and state, not by
-- scanning every command the device ever had.
CREATE INDEX commands_device_state ON commands (device_id, state);
