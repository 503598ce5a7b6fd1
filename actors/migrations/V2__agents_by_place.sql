-- Deleting a place checks the agents that sit there (the foreign key agents -> places):
-- without this index each place removed scans every agent, live or dead, and re-importing a
-- 10,000-agent tenant took seconds, longer each time.
CREATE INDEX agents_by_place ON agents (tenant_id, place);
