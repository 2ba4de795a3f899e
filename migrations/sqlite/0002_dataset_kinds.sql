-- 0002_dataset_kinds.sql - every kind a data set was uploaded as. Its id
-- covers the numbers only (dims, features, labels: DESIGN section 2), so the
-- same numbers may arrive as `samples` and later as `embeddings` (a generator
-- whose input and feature dimensions are equal takes both): each upload's kind
-- is recorded here; datasets.kind keeps the first. A job records the kind it
-- reads its data set as (jobs.embeddings).
CREATE TABLE dataset_kinds (
    dataset_id TEXT NOT NULL REFERENCES datasets (id),
    kind       TEXT NOT NULL CHECK (kind IN ('samples', 'embeddings')),
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (dataset_id, kind)
) WITHOUT ROWID;

INSERT INTO dataset_kinds (dataset_id, kind, created_ms)
    SELECT id, kind, created_ms FROM datasets;
-- inline job submissions stored their numbers under the kind they were sent as
INSERT OR IGNORE INTO dataset_kinds (dataset_id, kind, created_ms)
    SELECT dataset_id, CASE embeddings WHEN 1 THEN 'embeddings' ELSE 'samples' END,
           MIN(created_ms)
    FROM jobs GROUP BY dataset_id, embeddings;
