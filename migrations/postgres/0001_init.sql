-- 0001_init.sql (PostgreSQL) - the schema of migrations/sqlite/0001..0004 in
-- one step: generators, datasets (+ the kinds each was uploaded as), jobs,
-- checkpoints, lineage edges and idempotency keys. Applied in a transaction
-- by server/store_pg.c, which records it in schema_version.
-- Times are milliseconds since the Unix epoch (UTC); 0/1 flags stay integers
-- so both dialects read the same columns the same way.

CREATE TABLE generators (
    id              TEXT PRIMARY KEY CHECK (length(id) = 64),
    name            TEXT NOT NULL,
    path            TEXT NOT NULL,
    spec            TEXT NOT NULL,
    input_dim       INTEGER NOT NULL,
    feature_dim     INTEGER NOT NULL,
    min_way         INTEGER NOT NULL,
    max_way         INTEGER NOT NULL,
    params          BIGINT NOT NULL,
    zoo_size        INTEGER NOT NULL,
    zoo_fingerprint TEXT NOT NULL,
    config_json     TEXT NOT NULL,
    provenance_json TEXT NOT NULL,
    first_seen_ms   BIGINT NOT NULL,
    loaded_ms       BIGINT NOT NULL
);

CREATE TABLE datasets (
    id            TEXT PRIMARY KEY CHECK (length(id) = 64),
    kind          TEXT NOT NULL CHECK (kind IN ('samples', 'embeddings')),
    n             INTEGER NOT NULL CHECK (n > 0),
    dim           INTEGER NOT NULL CHECK (dim > 0),
    classes       INTEGER NOT NULL CHECK (classes > 0),
    class_counts  TEXT NOT NULL,          -- JSON array of per-class row counts
    x             BYTEA NOT NULL,         -- float32 little-endian [n, dim]
    y             BYTEA NOT NULL,         -- int32 little-endian [n]
    created_ms    BIGINT NOT NULL,
    CHECK (length(x) = 4 * n * dim),
    CHECK (length(y) = 4 * n)
);

CREATE TABLE dataset_kinds (
    dataset_id TEXT NOT NULL REFERENCES datasets (id),
    kind       TEXT NOT NULL CHECK (kind IN ('samples', 'embeddings')),
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (dataset_id, kind)
);

CREATE TABLE jobs (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    state             TEXT NOT NULL
                      CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    generator_id      TEXT NOT NULL REFERENCES generators (id),
    generator_name    TEXT NOT NULL,
    dataset_id        TEXT NOT NULL REFERENCES datasets (id),
    embeddings        INTEGER NOT NULL CHECK (embeddings IN (0, 1)),
    candidates        INTEGER NOT NULL CHECK (candidates > 0),
    steps             INTEGER NOT NULL CHECK (steps > 0),
    sampler           TEXT NOT NULL CHECK (sampler IN ('ddim', 'ddpm')),
    guidance          DOUBLE PRECISION NOT NULL,
    seed              BIGINT NOT NULL,
    priority          INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 9),
    parent_checkpoint TEXT,
    principal         TEXT NOT NULL,
    created_ms        BIGINT NOT NULL,
    started_ms        BIGINT,
    finished_ms       BIGINT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    progress          DOUBLE PRECISION NOT NULL DEFAULT 0,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    error_code        TEXT,
    error_message     TEXT,
    way               INTEGER,
    run_seconds       DOUBLE PRECISION,
    gate              INTEGER NOT NULL DEFAULT 0 CHECK (gate IN (0, 1)),
    gate_decision     TEXT,
    refine            INTEGER NOT NULL DEFAULT 0 CHECK (refine IN (0, 1))
);
CREATE INDEX jobs_by_state ON jobs (state, seq);

-- checkpoint bytes: as in SQLite, in DATA/checkpoints/<job_id>.pack at
-- [file_offset, file_offset + size_bytes)
CREATE TABLE checkpoints (
    id              TEXT PRIMARY KEY,
    job_id          TEXT NOT NULL REFERENCES jobs (id),
    rank            INTEGER NOT NULL,
    candidate_index INTEGER NOT NULL,
    support_acc     DOUBLE PRECISION NOT NULL,
    support_loss    DOUBLE PRECISION NOT NULL,
    norm            DOUBLE PRECISION NOT NULL,
    zoo_distance    DOUBLE PRECISION NOT NULL,
    zoo_nearest     INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    size_bytes      BIGINT NOT NULL CHECK (size_bytes >= 0),
    file_offset     BIGINT NOT NULL CHECK (file_offset >= 0),
    created_ms      BIGINT NOT NULL,
    method          TEXT NOT NULL DEFAULT 'diffusion'
                    CHECK (method IN ('diffusion', 'prototypes', 'logreg')),
    UNIQUE (job_id, rank)
);

CREATE TABLE lineage_edges (
    src_kind   TEXT NOT NULL CHECK (src_kind IN ('generator', 'dataset', 'job', 'checkpoint')),
    src_id     TEXT NOT NULL,
    dst_kind   TEXT NOT NULL CHECK (dst_kind IN ('job', 'checkpoint')),
    dst_id     TEXT NOT NULL,
    relation   TEXT NOT NULL CHECK (relation IN ('input', 'produced', 'derived')),
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (src_kind, src_id, dst_kind, dst_id, relation)
);
CREATE INDEX lineage_by_dst ON lineage_edges (dst_kind, dst_id);

CREATE TABLE idempotency_keys (
    principal      TEXT NOT NULL,
    key            TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    job_id         TEXT NOT NULL REFERENCES jobs (id),
    created_ms     BIGINT NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_by_age ON idempotency_keys (created_ms);
