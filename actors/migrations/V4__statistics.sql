-- Statistics (issue 22): each tenant's time zone (where its statistics' day starts) and how
-- its calls are counted; API keys that may read statistics only (a wallboard's).

ALTER TABLE tenants
    ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC',
    ADD COLUMN service_level_secs integer NOT NULL DEFAULT 20 CHECK (service_level_secs >= 0),
    ADD COLUMN short_abandon_secs integer NOT NULL DEFAULT 5 CHECK (short_abandon_secs >= 0);

ALTER TABLE api_keys
    ADD COLUMN scope text NOT NULL DEFAULT 'full' CHECK (scope IN ('full', 'stats'));
