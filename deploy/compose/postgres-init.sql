-- One database and one login role per service: no service can read another's tables.
-- Run by postgres-init.sh with psql, which fills in each role's password (:'<service>_password')
-- from the environment; Compose gives development defaults, real deployments use a managed
-- PostgreSQL and their secret store (docs/deployment.md).
create role intake login password :'intake_password';
create database intake owner intake;
create role records login password :'records_password';
create database records owner records;
create role translation login password :'translation_password';
create database translation owner translation;
create role partners login password :'partners_password';
create database partners owner partners;
create role notifications login password :'notifications_password';
create database notifications owner notifications;
-- The patient's web app (frontend/): its sessions and one-time codes, nothing of the services'.
create role web login password :'web_password';
create database web owner web;
revoke all on database intake, records, translation, partners, notifications, web from public;
