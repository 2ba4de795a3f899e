-- 0003_gate.sql - the generation gate (core/model/gate.h). A job records
-- whether it was asked to compare the diffusion candidates with the two
-- baselines (jobs.gate; jobs stored before this migration ran without it)
-- and, once it succeeded, the gate's decision as the JSON object of the
-- Job's `gate` field (jobs.gate_decision, built and parsed by proto/). Every
-- checkpoint records what produced it; those stored before were diffusion
-- candidates.
ALTER TABLE jobs ADD COLUMN gate INTEGER NOT NULL DEFAULT 0 CHECK (gate IN (0, 1));
ALTER TABLE jobs ADD COLUMN gate_decision TEXT;
ALTER TABLE checkpoints ADD COLUMN method TEXT NOT NULL DEFAULT 'diffusion'
    CHECK (method IN ('diffusion', 'prototypes', 'logreg'));
