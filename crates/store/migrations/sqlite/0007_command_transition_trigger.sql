-- Tether store, SQLite schema v7: a command's state change is one statement.
--
-- A transition was a transaction of four statements (BEGIN IMMEDIATE, read, UPDATE,
-- INSERT of the transition row) and the commit, and its audit event another write: on
-- SQLite each is a round trip to the connection's thread, and a command makes six
-- transitions on its way. Now the UPDATE sets `transition_detail` (the transition's
-- detail, a JSON object) and `prev_state` (the state it left, which `UPDATE … RETURNING`
-- hands back with the row), and these triggers write the transition row and the audit
-- event `command.<state>` in the same statement, so a state change and its audit event
-- are one atomic write. An INSERT that sets `transition_detail` records the command's
-- first transition the same way. MySQL does the same in an explicit transaction
-- (MariaDB has no `UPDATE … RETURNING`); both write the event `command_audit` in
-- crates/store/src/model/command.rs describes.
ALTER TABLE commands ADD COLUMN prev_state TEXT;
ALTER TABLE commands ADD COLUMN transition_detail TEXT;

-- Only a statement that sets `transition_detail` is a transition (`UPDATE OF` fires
-- whenever the column is in the SET list, whatever its value).
CREATE TRIGGER commands_transition_row AFTER UPDATE OF transition_detail ON commands
BEGIN
    INSERT INTO command_transitions (command_id, from_state, to_state, at, detail)
    VALUES (NEW.id, OLD.state, NEW.state, NEW.updated_at, NEW.transition_detail);
    INSERT INTO audit_events (actor, action, target, outcome, detail, trace_id, at, device_id)
    VALUES (
        NEW.origin_user_id,
        'command.' || NEW.state,
        NEW.device_id,
        CASE NEW.state
            WHEN 'denied' THEN 'denied'
            WHEN 'failed' THEN 'failure'
            WHEN 'expired' THEN 'failure'
            WHEN 'dlq' THEN 'failure'
            ELSE 'success'
        END,
        json_object(
            'attempts', NEW.attempts,
            'command_id', NEW.id,
            'detail', json(NEW.transition_detail),
            'error', NEW.error_code,
            'from', OLD.state,
            'method', NEW.method,
            'trace_id', NEW.trace_id
        ),
        NEW.trace_id,
        NEW.updated_at,
        CASE WHEN substr(NEW.device_id, 1, 4) = 'dev_' AND length(NEW.device_id) <= 255
            THEN NEW.device_id END
    );
END;

CREATE TRIGGER commands_first_transition_row AFTER INSERT ON commands
WHEN NEW.transition_detail IS NOT NULL
BEGIN
    INSERT INTO command_transitions (command_id, from_state, to_state, at, detail)
    VALUES (NEW.id, NULL, NEW.state, NEW.created_at, NEW.transition_detail);
    INSERT INTO audit_events (actor, action, target, outcome, detail, trace_id, at, device_id)
    VALUES (
        NEW.origin_user_id,
        'command.' || NEW.state,
        NEW.device_id,
        'success',
        json_object(
            'attempts', NEW.attempts,
            'command_id', NEW.id,
            'detail', json(NEW.transition_detail),
            'error', NEW.error_code,
            'from', NULL,
            'method', NEW.method,
            'trace_id', NEW.trace_id
        ),
        NEW.trace_id,
        NEW.created_at,
        CASE WHEN substr(NEW.device_id, 1, 4) = 'dev_' AND length(NEW.device_id) <= 255
            THEN NEW.device_id END
    );
END;

-- A device's unfinished commands (a session's look for waiting ones, ingest's
-- backpressure count) are found by device and state, not by scanning every command the
-- device ever had.
CREATE INDEX commands_device_state ON commands (device_id, state);
