-- A participant a host removed: they wait in the lobby if they come back, until a host admits them.
ALTER TABLE session_participants ADD COLUMN removed_at TEXT;
