-- API keys of the provisioning API, stored as hashes of the keys (`sha256:<hex>`); a hash
-- reaches one tenant only.
CREATE TABLE api_keys (
    tenant_id bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    name      text NOT NULL,
    position  integer NOT NULL,
    hash      text NOT NULL UNIQUE,
    PRIMARY KEY (tenant_id, name)
);

-- An update of one place (a delete and an insert of its row in one transaction) must not
-- trip over the agents sitting there: the reference is checked at commit.
ALTER TABLE agents ALTER CONSTRAINT agents_tenant_id_place_fkey DEFERRABLE INITIALLY DEFERRED;
