"""Test configuration: the real-stack fixtures come from the devstack pytest plugin.

`local_stack`, `kafka_bootstrap`, `postgres_admin_dsn`, `s3_client` (MinIO's administrator),
`new_database`, `new_topic`, `new_bucket` and `service_s3` (the services' own MinIO users on a
bucket) are defined in deploy/local/src/devstack/pytest_plugin.py (registered as the
`devstack` pytest plugin). Markers: unit (no I/O), integration (real stack), e2e (whole journey).
"""

pytest_plugins = ["pytester"]
