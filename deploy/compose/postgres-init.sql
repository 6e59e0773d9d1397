-- One database and one login role per service: no service can read another's tables.
-- Development passwords only; real deployments take them from their secret store.
create role intake login password 'intake-dev';
create database intake owner intake;
create role records login password 'records-dev';
create database records owner records;
create role translation login password 'translation-dev';
create database translation owner translation;
create role partners login password 'partners-dev';
create database partners owner partners;
create role notifications login password 'notifications-dev';
create database notifications owner notifications;
revoke all on database intake, records, translation, partners, notifications from public;
