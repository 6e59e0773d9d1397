"""Each service logs in to MinIO as itself, with only what it needs (real MinIO).

The stack (`devstack.stack.start`, as `make up` and the test harness run it) makes the documents
bucket and one MinIO user per service that uses object storage (`devstack.object_store`), and
hands the services those users, never the root user. Here each user is put to the test against
the real server: records reads, writes and deletes documents of its bucket and nothing more;
translation only reads them; neither administers MinIO; intake, partners and notifications get
no object-storage credentials at all.
"""

from __future__ import annotations

import io
import os
import uuid

import pytest
from minio import Minio, MinioAdmin
from minio.credentials import StaticProvider
from minio.error import MinioAdminException, S3Error
from minio.sse import SseS3

from devstack import object_store
from devstack.stack import StackInfo

pytestmark = pytest.mark.security

BUCKET = object_store.DOCUMENTS_BUCKET


def _client(stack: StackInfo, service: str) -> Minio:
    user = stack.s3_users[service]
    return Minio(
        stack.s3_endpoint,
        access_key=user["access_key"],
        secret_key=user["secret_key"],
        secure=False,
    )


def _admin(stack: StackInfo, service: str) -> MinioAdmin:
    user = stack.s3_users[service]
    return MinioAdmin(
        endpoint=stack.s3_endpoint,
        credentials=StaticProvider(user["access_key"], user["secret_key"]),
        secure=False,
    )


def _denied(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(S3Error) as refused:
        call()
    assert refused.value.code == "AccessDenied", refused.value


def _put(client: Minio, bucket: str, key: str, data: bytes = b"%PDF-1.7 a document") -> None:
    client.put_object(bucket, key, io.BytesIO(data), len(data), sse=SseS3())


def test_the_services_are_given_their_own_users_never_the_root_user(local_stack) -> None:
    env = local_stack.env()
    assert set(local_stack.s3_users) == {"records", "translation"}
    for service, user in local_stack.s3_users.items():
        assert user["access_key"] != local_stack.s3_access_key
        assert user["secret_key"] != local_stack.s3_secret_key
        assert env[f"REFERRALS_{service.upper()}_S3__ACCESS_KEY"] == user["access_key"]
        assert env[f"REFERRALS_{service.upper()}_S3__SECRET_KEY"] == user["secret_key"]
    assert local_stack.s3_users["records"] != local_stack.s3_users["translation"]
    # No variable of the services' environment holds the root user or its secret, and the
    # services that never touch object storage get no credentials for it.
    assert local_stack.s3_secret_key not in env.values()
    assert local_stack.s3_access_key not in env.values()
    for service in ("intake", "partners", "notifications"):
        assert not any(k.startswith(f"REFERRALS_{service.upper()}_S3__") for k in env), service
    assert not {"REFERRALS_S3__ACCESS_KEY", "REFERRALS_S3__SECRET_KEY"} & set(env)


def test_the_services_settings_read_their_own_user(local_stack, monkeypatch) -> None:
    from referrals_records.config import RecordsSettings
    from referrals_translation.config import TranslationSettings

    for key in [k for k in os.environ if k.startswith("REFERRALS_")]:
        monkeypatch.delenv(key)
    for key, value in local_stack.env().items():
        monkeypatch.setenv(key, value)
    for settings, service in (
        (RecordsSettings(), "records"),
        (TranslationSettings(), "translation"),
    ):
        assert settings.s3.endpoint == local_stack.s3_endpoint
        assert settings.s3.access_key == local_stack.s3_users[service]["access_key"]
        assert (
            settings.s3.secret_key.get_secret_value() == local_stack.s3_users[service]["secret_key"]
        )


def test_records_reads_writes_and_deletes_documents_of_its_bucket(local_stack) -> None:
    records = _client(local_stack, "records")
    key = f"cases/{uuid.uuid4()}/documents/{uuid.uuid4()}"
    assert records.bucket_exists(BUCKET)  # its start-up check
    _put(records, BUCKET, key)
    assert records.get_object(BUCKET, key).read() == b"%PDF-1.7 a document"
    assert records.stat_object(BUCKET, key).size == len(b"%PDF-1.7 a document")
    assert key in {
        o.object_name for o in records.list_objects(BUCKET, prefix="cases/", recursive=True)
    }
    assert "X-Amz-Signature" in records.presigned_get_object(BUCKET, key)
    records.remove_object(BUCKET, key)
    with pytest.raises(S3Error) as gone:
        records.stat_object(BUCKET, key)
    assert gone.value.code == "NoSuchKey"


def test_records_cannot_manage_buckets_nor_touch_another_bucket(
    local_stack, new_bucket, s3_client
) -> None:
    records = _client(local_stack, "records")
    other = new_bucket("other")
    _put(s3_client, other, "someone-elses")
    _denied(lambda: records.make_bucket(f"records-made-{uuid.uuid4().hex[:8]}"))
    _denied(lambda: records.remove_bucket(BUCKET))
    _denied(lambda: records.remove_bucket(other))
    # MinIO lists only the buckets a user may use: never the others
    assert other not in {b.name for b in records.list_buckets()}
    _denied(lambda: records.get_object(other, "someone-elses"))
    _denied(lambda: _put(records, other, "planted"))
    _denied(lambda: records.remove_object(other, "someone-elses"))
    _denied(lambda: list(records.list_objects(other)))
    _denied(lambda: records.get_bucket_policy(BUCKET))
    _denied(
        lambda: records.set_bucket_policy(
            BUCKET,
            '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",'
            f'"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::{BUCKET}/*"]}}]}}',
        )
    )
    # the other bucket's object is still there, untouched
    assert s3_client.get_object(other, "someone-elses").read() == b"%PDF-1.7 a document"
    assert s3_client.bucket_exists(BUCKET)


def test_translation_reads_documents_but_cannot_write_delete_or_list_them(local_stack) -> None:
    records, translation = _client(local_stack, "records"), _client(local_stack, "translation")
    key = f"cases/{uuid.uuid4()}/documents/{uuid.uuid4()}"
    _put(records, BUCKET, key)
    try:
        assert translation.get_object(BUCKET, key).read() == b"%PDF-1.7 a document"
        _denied(lambda: _put(translation, BUCKET, key, b"overwritten"))
        _denied(lambda: _put(translation, BUCKET, f"cases/{uuid.uuid4()}/planted"))
        _denied(lambda: translation.remove_object(BUCKET, key))
        _denied(lambda: list(translation.list_objects(BUCKET, recursive=True)))
        _denied(lambda: translation.make_bucket(f"translation-made-{uuid.uuid4().hex[:8]}"))
        _denied(lambda: translation.remove_bucket(BUCKET))
        assert records.get_object(BUCKET, key).read() == b"%PDF-1.7 a document"
    finally:
        records.remove_object(BUCKET, key)


@pytest.mark.parametrize("service", ["records", "translation"])
def test_no_service_can_use_the_admin_api(local_stack, service: str) -> None:
    admin = _admin(local_stack, service)
    attempts = {
        "list users": admin.user_list,
        "add a user": lambda: admin.user_add(f"intruder-{uuid.uuid4().hex[:6]}", "a-long-secret-1"),
        "list policies": admin.policy_list,
        "attach readwrite to itself": lambda: admin.attach_policy(
            ["readwrite"], user=local_stack.s3_users[service]["access_key"]
        ),
        "server info": admin.info,
    }
    for what, attempt in attempts.items():
        with pytest.raises(MinioAdminException) as refused:
            attempt()
        assert "Status: 403" in str(refused.value), (what, refused.value)
    # and nothing changed: the user still has only its own policy
    root = MinioAdmin(
        endpoint=local_stack.s3_endpoint,
        credentials=StaticProvider(local_stack.s3_access_key, local_stack.s3_secret_key),
        secure=False,
    )
    info = root.user_info(local_stack.s3_users[service]["access_key"])
    assert "readwrite" not in info.replace(f"{service}-read-write", "")


def test_provisioning_again_keeps_the_users_working(local_stack) -> None:
    """A restarted stack provisions again on the same MinIO data: same users, same keys."""
    again = object_store.provision(
        local_stack.s3_endpoint, local_stack.s3_access_key, local_stack.s3_secret_key
    )
    for service, user in again.items():
        assert user.access_key == local_stack.s3_users[service]["access_key"]
        assert user.secret_key == local_stack.s3_users[service]["secret_key"]
    assert _client(local_stack, "records").bucket_exists(BUCKET)
