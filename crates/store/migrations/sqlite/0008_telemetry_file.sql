-- Tether store, SQLite schema v8: the telemetry events live in a file of their own.
--
-- `telemetry_events` (v2) moves to `<store>-telemetry.db` (its own schema:
-- migrations/sqlite/telemetry/), so that the analytics' transactions storing a fleet's
-- samples take that file's write lock only and no write to this file waits behind them.
-- The store copies the events there before this migration runs (see
-- `sqlite::copy_telemetry_out`); this drops the emptied table. A server of an earlier
-- version refuses this file (it does not know v8) rather than failing at every sample.

DROP TABLE IF EXISTS telemetry_events;
