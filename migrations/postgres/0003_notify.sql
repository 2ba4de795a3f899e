-- 0003_notify.sql (PostgreSQL) - replicas hear each other's job changes:
-- every new job and every change of a job's state is announced on the
-- channel d2nwg_jobs as "JOB_ID STATE REPLICA" (REPLICA: the d2nwg.replica
-- setting of the connection that made it, so a replica skips its own).
-- server/store_listen.c LISTENs; long-polls and the event feed of every
-- replica wake on it (delivered when the change commits).
CREATE FUNCTION d2nwg_job_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.state IS DISTINCT FROM OLD.state THEN
        PERFORM pg_notify('d2nwg_jobs', NEW.id || ' ' || NEW.state || ' ' ||
                          coalesce(current_setting('d2nwg.replica', true), ''));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION d2nwg_job_notify();
