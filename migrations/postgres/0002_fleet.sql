-- 0002_fleet.sql (PostgreSQL) - several d2nwgd replicas on one database.
-- A running job is claimed by one replica (jobs.owner) under a lease
-- (jobs.lease_until, ms on the database's clock) that the replica renews
-- while it works; a job whose lease ran out (its replica died) goes back to
-- queued and another replica runs it again from the start (same seed, same
-- bytes). Checkpoint bytes live here too (one pack per job, the checkpoints
-- back to back at checkpoints.file_offset), so replicas share nothing but
-- this database.
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until BIGINT;
CREATE INDEX jobs_running_lease ON jobs (lease_until) WHERE state = 'running';

CREATE TABLE checkpoint_packs (
    job_id TEXT PRIMARY KEY REFERENCES jobs (id),
    bytes  BYTEA NOT NULL
);
