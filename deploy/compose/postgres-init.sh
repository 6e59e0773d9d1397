#!/bin/sh
# First start of the Compose PostgreSQL (docker-entrypoint-initdb.d): create the services' (and
# the web app's) roles and databases with postgres-init.sql, each role's password from the
# environment.
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --no-password --no-psqlrc \
  --dbname postgres \
  -v intake_password="${INTAKE_DB_PASSWORD:?}" \
  -v records_password="${RECORDS_DB_PASSWORD:?}" \
  -v translation_password="${TRANSLATION_DB_PASSWORD:?}" \
  -v partners_password="${PARTNERS_DB_PASSWORD:?}" \
  -v notifications_password="${NOTIFICATIONS_DB_PASSWORD:?}" \
  -v web_password="${WEB_DB_PASSWORD:?}" \
  -f /opt/referrals/postgres-init.sql
