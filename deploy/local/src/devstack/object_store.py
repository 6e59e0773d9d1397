"""MinIO users of the services: each service that uses object storage logs in as itself.

MinIO's root user administers the server (users, policies, buckets) and is never given to a
service. Of the five services only two touch object storage:

- records stores the documents: it reads, writes and deletes objects of its bucket, lists it
  and its multipart uploads (its start-up checks that the bucket exists; a failed upload's parts
  are aborted), but cannot create or delete buckets, change their policies, nor reach any other
  bucket;
- translation reads documents to check their language: `GetObject` on the same bucket, nothing
  else (no listing, no writing, no deleting).

intake, partners and notifications get no object-storage credentials at all. The bucket is made
here, by the administrator, before the services start. Compose and Kubernetes do the same with
`deploy/k8s/base/minio-users.sh` (the policies there are the same documents as `policy` makes).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

DOCUMENTS_BUCKET = "referrals-documents"

ACCESS: dict[str, str] = {"records": "read-write", "translation": "read-only"}
"""The services that use object storage, and how."""

_BUCKET_READ_WRITE = ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"]
_OBJECT_READ_WRITE = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]


@dataclass(frozen=True)
class ServiceUser:
    """A service's MinIO login."""

    access_key: str
    secret_key: str
    policy: str


def policy(access: str, bucket: str) -> dict[str, Any]:
    """The IAM policy of `access` (`read-write` or `read-only`) on `bucket` only."""
    if access == "read-only":
        on_bucket, on_objects = ["s3:GetBucketLocation"], ["s3:GetObject"]
    elif access == "read-write":
        on_bucket, on_objects = _BUCKET_READ_WRITE, _OBJECT_READ_WRITE
    else:
        raise ValueError(f"unknown access {access!r}")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": on_bucket, "Resource": [f"arn:aws:s3:::{bucket}"]},
            {"Effect": "Allow", "Action": on_objects, "Resource": [f"arn:aws:s3:::{bucket}/*"]},
        ],
    }


def service_secret(root_secret: str, name: str) -> str:
    """A service user's secret key, derived from the stack's root secret (so a restarted stack
    gives its services the same keys without storing more secrets); the root secret cannot be
    recovered from it."""
    digest = hmac.new(root_secret.encode(), f"minio-user:{name}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def _clients(endpoint: str, root_user: str, root_password: str, secure: bool) -> tuple[Any, Any]:
    from minio import Minio, MinioAdmin
    from minio.credentials.providers import StaticProvider

    s3 = Minio(endpoint, access_key=root_user, secret_key=root_password, secure=secure)
    admin = MinioAdmin(
        endpoint=endpoint, credentials=StaticProvider(root_user, root_password), secure=secure
    )
    return s3, admin


def provision(
    endpoint: str,
    root_user: str,
    root_password: str,
    *,
    bucket: str = DOCUMENTS_BUCKET,
    users: dict[str, str] | None = None,
    secure: bool = False,
) -> dict[str, ServiceUser]:
    """Make `bucket` and, per service of `ACCESS`, a policy on that bucket and a user with it.

    `users` maps a service to its user name (default: the service's name). Idempotent: an
    existing bucket stays, an existing user gets its (derived) secret and policy again."""
    from minio.error import MinioAdminException

    s3, admin = _clients(endpoint, root_user, root_password, secure)
    if not s3.bucket_exists(bucket):
        s3.make_bucket(bucket)
    made: dict[str, ServiceUser] = {}
    for service, access in ACCESS.items():
        name = (users or {}).get(service, service)
        secret = service_secret(root_password, name)
        policy_name = f"{name}-{access}"
        admin.policy_add(policy_name, policy=policy(access, bucket))
        admin.user_add(name, secret)
        try:
            admin.attach_policy([policy_name], user=name)
        except MinioAdminException as exc:
            if "already" not in str(exc).lower():  # attached by an earlier start
                raise
        made[service] = ServiceUser(name, secret, policy_name)
    return made


def remove(
    endpoint: str,
    root_user: str,
    root_password: str,
    users: dict[str, ServiceUser],
    *,
    secure: bool = False,
) -> None:
    """Delete the users and policies `provision` made (a test's own bucket's)."""
    from minio.error import MinioAdminException

    _, admin = _clients(endpoint, root_user, root_password, secure)
    for user in users.values():
        with contextlib.suppress(MinioAdminException):
            admin.user_remove(user.access_key)
        with contextlib.suppress(MinioAdminException):
            admin.policy_remove(user.policy)
