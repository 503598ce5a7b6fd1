-- The configuration of every tenant (design.md "Where state lives"). Lists keep the order
-- they were written in (`position`), so that an export reproduces an import exactly. A tenant's
-- `version` grows with every committed change; nodes reload a tenant whose version passed
-- theirs, told by NOTIFY switchboard_config '<tenant>:<version>'.

CREATE TABLE tenants (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    domain       text NOT NULL UNIQUE,
    realm        text,
    digest       text[] NOT NULL,
    authenticate boolean NOT NULL,
    wrap_up_secs integer NOT NULL CHECK (wrap_up_secs >= 0),
    options      jsonb NOT NULL DEFAULT '{}',
    version      bigint NOT NULL DEFAULT 1
);

CREATE TABLE dns (
    tenant_id    bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    number       text NOT NULL,
    position     integer NOT NULL,
    kind         text NOT NULL,
    password     text NOT NULL DEFAULT '',
    digest       text[],
    authenticate boolean,
    options      jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, number)
);

CREATE TABLE skills (
    tenant_id bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    name      text NOT NULL,
    position  integer NOT NULL,
    options   jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE agent_groups (
    tenant_id bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    name      text NOT NULL,
    position  integer NOT NULL,
    options   jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE places (
    tenant_id bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    name      text NOT NULL,
    position  integer NOT NULL,
    dns       text[] NOT NULL,
    options   jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE agents (
    tenant_id    bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    id           text NOT NULL,
    position     integer NOT NULL,
    name         text NOT NULL DEFAULT '',
    login_code   text NOT NULL,
    place        text,
    skills       jsonb NOT NULL DEFAULT '{}',
    groups       text[] NOT NULL DEFAULT '{}',
    wrap_up_secs integer CHECK (wrap_up_secs >= 0),
    options      jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, login_code),
    FOREIGN KEY (tenant_id, place) REFERENCES places (tenant_id, name)
);

CREATE TABLE routing_points (
    tenant_id           bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    number              text NOT NULL,
    position            integer NOT NULL,
    strategy            text NOT NULL,
    default_destination text NOT NULL,
    timeout_secs        integer NOT NULL CHECK (timeout_secs >= 0),
    options             jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, number)
);

CREATE TABLE queues (
    tenant_id bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    name      text NOT NULL,
    position  integer NOT NULL,
    options   jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE trunks (
    tenant_id bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    name      text NOT NULL,
    position  integer NOT NULL,
    inbound   text[] NOT NULL DEFAULT '{}',
    gateway   text,
    caller_id jsonb NOT NULL DEFAULT '[]',
    options   jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE media_servers (
    tenant_id bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    name      text NOT NULL,
    position  integer NOT NULL,
    address   text NOT NULL,
    options   jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE dial_plan (
    tenant_id   bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    position    integer NOT NULL,
    pattern     text NOT NULL,
    rewrite     text NOT NULL DEFAULT '',
    destination text NOT NULL,
    options     jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, position)
);

CREATE TABLE strategies (
    tenant_id bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    name      text NOT NULL,
    version   integer NOT NULL,
    position  integer NOT NULL,
    document  text NOT NULL,
    options   jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, name, version)
);
