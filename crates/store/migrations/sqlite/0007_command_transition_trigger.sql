-- Tether store, SQLite schema v7: a command's state change is one statement.
--
-- A transition was a transaction of four statements (BEGIN IMMEDIATE, read, UPDATE,
-- INSERT of the transition row) and the commit: on SQLite each is a round trip to the
-- connection's thread, and a command makes six transitions on its way. Now the UPDATE
-- sets `transition_detail` (the transition row's detail) and `prev_state` (the state it
-- left, which `UPDATE … RETURNING` hands back with the row), and these triggers write the
-- transition row in the same statement. An INSERT that sets `transition_detail` writes
-- the command's first transition the same way. MySQL keeps the explicit transaction
-- (MariaDB has no `UPDATE … RETURNING`).
ALTER TABLE commands ADD COLUMN prev_state TEXT;
ALTER TABLE commands ADD COLUMN transition_detail TEXT;

-- Only a statement that sets `transition_detail` is a transition (`UPDATE OF` fires
-- whenever the column is in the SET list, whatever its value).
CREATE TRIGGER commands_transition_row AFTER UPDATE OF transition_detail ON commands
BEGIN
    INSERT INTO command_transitions (command_id, from_state, to_state, at, detail)
    VALUES (NEW.id, OLD.state, NEW.state, NEW.updated_at, NEW.transition_detail);
END;

CREATE TRIGGER commands_first_transition_row AFTER INSERT ON commands
WHEN NEW.transition_detail IS NOT NULL
BEGIN
    INSERT INTO command_transitions (command_id, from_state, to_state, at, detail)
    VALUES (NEW.id, NULL, NEW.state, NEW.created_at, NEW.transition_detail);
END;
