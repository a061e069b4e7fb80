#!/bin/sh
# Roles for the compose deployment. The postgres image runs this once, as the owner, when the
# data volume is first initialised (/docker-entrypoint-initdb.d); `migrate` runs afterwards and
# grants the tables. Passwords come from the compose secrets and are passed to psql as variables
# (:'name' quotes them as literals), so they never appear in a command line or in this file.
#
#   claire_user   the worker's runtime role: LOGIN; the migrations grant it exactly what the
#                 worker and `prune` need (no DDL, no TRUNCATE, no other tables)
#   paper_reader  Grafana's read-only role: SELECT on the tables and views the owner creates
#
# To change a password later: ALTER ROLE claire_user PASSWORD '...'; (this script does not run
# again on an initialised volume).
set -eu

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v dbname="$POSTGRES_DB" \
    -v owner="$POSTGRES_USER" \
    -v claire_password="$(cat /run/secrets/claire_user_password)" \
    -v reader_password="$(cat /run/secrets/grafana_reader_password)" <<'SQL'
CREATE ROLE claire_user LOGIN PASSWORD :'claire_password';
CREATE ROLE paper_reader LOGIN PASSWORD :'reader_password';

-- Only these roles (and the owner) may connect; nobody gets temporary tables by default.
REVOKE ALL ON DATABASE :"dbname" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"dbname" TO claire_user, paper_reader;
-- PostgreSQL 15 already keeps PUBLIC from creating in schema public; say it anyway.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- Whatever the owner creates later (the migrations) is readable by the dashboard role.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO paper_reader;
SQL
