-- 0001_init.sql - d2nwgd's store: generators, datasets, jobs, checkpoints,
-- lineage edges and idempotency keys. Applied once, in a transaction, by
-- server/store.c, which then sets PRAGMA user_version = 1.
-- Times are milliseconds since the Unix epoch (UTC).

-- Every generator bundle the daemon has served (id = sha256 of the file), so
-- lineage stays answerable after the bundle is no longer loaded.
CREATE TABLE generators (
    id              TEXT PRIMARY KEY CHECK (length(id) = 64),
    name            TEXT NOT NULL,
    path            TEXT NOT NULL,
    spec            TEXT NOT NULL,
    input_dim       INTEGER NOT NULL,
    feature_dim     INTEGER NOT NULL,
    min_way         INTEGER NOT NULL,
    max_way         INTEGER NOT NULL,
    params          INTEGER NOT NULL,
    zoo_size        INTEGER NOT NULL,
    zoo_fingerprint TEXT NOT NULL,
    config_json     TEXT NOT NULL,
    provenance_json TEXT NOT NULL,
    first_seen_ms   INTEGER NOT NULL,
    loaded_ms       INTEGER NOT NULL
);

-- Content-addressed data sets (id = dataset_fingerprint). The values live
-- here so that a queued job can be re-run after a crash.
CREATE TABLE datasets (
    id            TEXT PRIMARY KEY CHECK (length(id) = 64),
    kind          TEXT NOT NULL CHECK (kind IN ('samples', 'embeddings')),
    n             INTEGER NOT NULL CHECK (n > 0),
    dim           INTEGER NOT NULL CHECK (dim > 0),
    classes       INTEGER NOT NULL CHECK (classes > 0),
    class_counts  TEXT NOT NULL,          -- JSON array of per-class row counts
    x             BLOB NOT NULL,          -- float32 little-endian [n, dim]
    y             BLOB NOT NULL,          -- int32 little-endian [n]
    created_ms    INTEGER NOT NULL,
    CHECK (length(x) = 4 * n * dim),
    CHECK (length(y) = 4 * n)
);

CREATE TABLE jobs (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,  -- submission order, list cursor
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
    guidance          REAL NOT NULL,
    seed              INTEGER NOT NULL,
    priority          INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 9),
    parent_checkpoint TEXT,
    principal         TEXT NOT NULL,      -- token name ('anonymous' without tokens)
    created_ms        INTEGER NOT NULL,
    started_ms        INTEGER,
    finished_ms       INTEGER,
    attempts          INTEGER NOT NULL DEFAULT 0,
    progress          REAL NOT NULL DEFAULT 0,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    error_code        TEXT,
    error_message     TEXT,
    way               INTEGER,
    run_seconds       REAL
);
CREATE INDEX jobs_by_state ON jobs (state, seq);

-- One row per ranked candidate of a succeeded job. A job's checkpoints are
-- complete safetensors files stored back to back in one pack,
-- DATA/checkpoints/<job_id>.pack (one atomic write - temporary name, fsync,
-- rename - before these rows): bytes [file_offset, file_offset + size_bytes).
CREATE TABLE checkpoints (
    id              TEXT PRIMARY KEY,
    job_id          TEXT NOT NULL REFERENCES jobs (id),
    rank            INTEGER NOT NULL,
    candidate_index INTEGER NOT NULL,
    support_acc     REAL NOT NULL,
    support_loss    REAL NOT NULL,
    norm            REAL NOT NULL,
    zoo_distance    REAL NOT NULL,
    zoo_nearest     INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    size_bytes      INTEGER NOT NULL CHECK (size_bytes >= 0),
    file_offset     INTEGER NOT NULL CHECK (file_offset >= 0),
    created_ms      INTEGER NOT NULL,
    UNIQUE (job_id, rank)
);

-- Provenance graph: generator -> job, dataset -> job ('input'),
-- job -> checkpoint ('produced'), checkpoint -> checkpoint ('derived').
CREATE TABLE lineage_edges (
    src_kind   TEXT NOT NULL CHECK (src_kind IN ('generator', 'dataset', 'job', 'checkpoint')),
    src_id     TEXT NOT NULL,
    dst_kind   TEXT NOT NULL CHECK (dst_kind IN ('job', 'checkpoint')),
    dst_id     TEXT NOT NULL,
    relation   TEXT NOT NULL CHECK (relation IN ('input', 'produced', 'derived')),
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (src_kind, src_id, dst_kind, dst_id, relation)
);
CREATE INDEX lineage_by_dst ON lineage_edges (dst_kind, dst_id);

-- Idempotency-Key -> the job it created, per principal, with the sha256 of
-- the canonical request body; expired after 24 hours.
CREATE TABLE idempotency_keys (
    principal      TEXT NOT NULL,
    key            TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    job_id         TEXT NOT NULL REFERENCES jobs (id),
    created_ms     INTEGER NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_by_age ON idempotency_keys (created_ms);
