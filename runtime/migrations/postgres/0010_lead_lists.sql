-- A lead list's default region (ISO 3166): where its files' numbers
-- without + are read when an import names none. Set by the last import
-- that named one; a list without a row reads them in the node's
-- outbound.default_region.
CREATE TABLE lead_lists (
    name       TEXT PRIMARY KEY,
    region     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
