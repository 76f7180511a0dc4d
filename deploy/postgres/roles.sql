-- One login role per service; each may use and create objects only in its own schema.
--
-- Run once per database, as its owner (or a superuser), with psql:
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -f deploy/postgres/roles.sql
-- then set the passwords from your secret store (never commit them):
--   ALTER ROLE steward_tiering PASSWORD '…';
-- and give each service its own URL, e.g. for tiering
--   DATABASE_URL=postgresql+asyncpg://steward_tiering:…@db:5432/steward
-- Idempotent: re-running it changes nothing.

-- the roles (CREATE ROLE has no IF NOT EXISTS; \gexec runs only the missing ones)
SELECT format('CREATE ROLE %I LOGIN', 'steward_' || service)
FROM unnest(ARRAY['tiering', 'complaints', 'notifications', 'profile']) AS service
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'steward_' || service)
\gexec

-- nobody else connects or creates schemas; the services only connect
REVOKE ALL ON DATABASE :"DBNAME" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"DBNAME"
    TO steward_tiering, steward_complaints, steward_notifications, steward_profile;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- one schema per service (the name the service uses as its search_path), owned by the
-- admin so a service cannot drop it; the service's role may use it and create its tables
CREATE SCHEMA IF NOT EXISTS tiering;
CREATE SCHEMA IF NOT EXISTS complaints;
CREATE SCHEMA IF NOT EXISTS notifications;
CREATE SCHEMA IF NOT EXISTS profile;
REVOKE ALL ON SCHEMA tiering, complaints, notifications, profile FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA tiering TO steward_tiering;
GRANT USAGE, CREATE ON SCHEMA complaints TO steward_complaints;
GRANT USAGE, CREATE ON SCHEMA notifications TO steward_notifications;
GRANT USAGE, CREATE ON SCHEMA profile TO steward_profile;
