#!/bin/sh
# The documents bucket and one MinIO user per service that uses object storage, each with its own
# policy on that bucket only: records read-write (objects, listing, multipart uploads; no bucket
# administration), translation read-only (GetObject). intake, partners and notifications get no
# user. The services never see the administrator's credentials. Idempotent: run it again to
# rotate a service's secret key. devstack makes the same users and policies for the local stack
# (devstack.object_store; tests/deploy checks that the policies below are the same).
#
# Environment: S3_ENDPOINT (host:port), S3_SECURE (true|false), BUCKET, MINIO_ADMIN_USER,
# MINIO_ADMIN_PASSWORD (the root user, or an admin user allowed to create buckets, users and
# policies), RECORDS_S3_ACCESS_KEY, RECORDS_S3_SECRET_KEY, TRANSLATION_S3_ACCESS_KEY,
# TRANSLATION_S3_SECRET_KEY; optional MINIO_CA_FILE (a private CA of MinIO's certificate).
set -eu

export MC_CONFIG_DIR="${MC_CONFIG_DIR:-/tmp/.mc}"
mkdir -p "$MC_CONFIG_DIR/certs/CAs"
if [ -n "${MINIO_CA_FILE:-}" ] && [ -f "$MINIO_CA_FILE" ]; then
  cp "$MINIO_CA_FILE" "$MC_CONFIG_DIR/certs/CAs/minio-ca.crt"
fi
scheme=http
[ "${S3_SECURE:-false}" = "true" ] && scheme=https

attempt=0
until mc alias set referrals "$scheme://$S3_ENDPOINT" "$MINIO_ADMIN_USER" "$MINIO_ADMIN_PASSWORD" >/dev/null; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge 30 ]; then
    echo "MinIO at $S3_ENDPOINT did not accept the administrator's login" >&2
    exit 1
  fi
  sleep 2
done

mc mb --ignore-existing "referrals/$BUCKET"

policies="$(mktemp -d)"
cat >"$policies/read-write.json" <<EOF
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::${BUCKET}"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::${BUCKET}/*"]
    }
  ]
}
EOF
cat >"$policies/read-only.json" <<EOF
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation"],
      "Resource": ["arn:aws:s3:::${BUCKET}"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject"],
      "Resource": ["arn:aws:s3:::${BUCKET}/*"]
    }
  ]
}
EOF

# grant <user> <secret key> <read-write|read-only>: the policy <user>-<access>, the user, the
# policy attached to it (already attached by an earlier run is fine).
grant() {
  mc admin policy create referrals "$1-$3" "$policies/$3.json"
  mc admin user add referrals "$1" "$2"
  if ! out="$(mc admin policy attach referrals "$1-$3" --user "$1" 2>&1)"; then
    case "$out" in
      *already*) ;;
      *) echo "$out" >&2; exit 1 ;;
    esac
  fi
  echo "MinIO user $1: $3 on bucket $BUCKET"
}

grant "$RECORDS_S3_ACCESS_KEY" "$RECORDS_S3_SECRET_KEY" read-write
grant "$TRANSLATION_S3_ACCESS_KEY" "$TRANSLATION_S3_SECRET_KEY" read-only
rm -rf "$policies"
