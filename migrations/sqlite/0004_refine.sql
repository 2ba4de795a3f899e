-- 0004_refine.sql - refinement (core/model/generator.h, gen_request.refine):
-- whether a job asked for each diffusion sample to become the centre of the
-- prior of logistic regression on its support set. Jobs stored before this
-- migration ran without it.
ALTER TABLE jobs ADD COLUMN refine INTEGER NOT NULL DEFAULT 0 CHECK (refine IN (0, 1));
