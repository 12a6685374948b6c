-- Tether store, SQLite schema v9: the devices' last-seen times in an index of their own.
--
-- The analytics read the last-seen time of every device a batch of telemetry comes from
-- (it checks that each exists, and says whose time moves): hundreds of devices a read,
-- many reads a second. By the primary key alone each lookup read the device's whole row,
-- about 1 KiB with its certificate, from a page of its own; in WAL mode the analytics'
-- connection drops its page cache whenever another connection commits to this file, so
-- those pages were read again at nearly every batch. This index holds both columns the
-- read asks for, in a few hundred pages for 18,000 devices.

CREATE INDEX IF NOT EXISTS devices_last_seen ON devices (id, last_seen_at);
