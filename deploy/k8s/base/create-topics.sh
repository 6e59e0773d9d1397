#!/bin/sh
# Declare the platform's Kafka topics, each with its dead-letter topic (<topic>.dlq), before any
# service starts: brokers run with auto.create.topics.enable=false, and a topic made here gets
# the cluster's replication factor and min.insync.replicas (the services would create a missing
# topic themselves, but with replication factor 1). Existing topics are left as they are.
#
# Topics and partition counts come from the arguments (`<topic>:<partitions>`, Compose) or, with
# no arguments, from the files of $TOPICS_DIR (one file per topic holding its partition count:
# the kafka-topics ConfigMap, Kubernetes). Runs in the apache/kafka image.
#
#   KAFKA_BOOTSTRAP_SERVERS     where the brokers are (required)
#   KAFKA_REPLICATION_FACTOR    default 1 (a production cluster: 3)
#   KAFKA_MIN_INSYNC_REPLICAS   default 1 (a production cluster: 2)
#   KAFKA_COMMAND_CONFIG        client properties (SASL/TLS) used when the file exists
#   KAFKA_COMPACTED_TOPICS      topics (space-separated) made with cleanup.policy=compact, their
#                               .dlq not: referrals_common.contracts.topics.TOPIC_CONFIGS
set -eu

: "${KAFKA_BOOTSTRAP_SERVERS:?set KAFKA_BOOTSTRAP_SERVERS}"
replication="${KAFKA_REPLICATION_FACTOR:-1}"
min_isr="${KAFKA_MIN_INSYNC_REPLICAS:-1}"
compacted=" ${KAFKA_COMPACTED_TOPICS:-} "
topics_dir="${TOPICS_DIR:-/etc/referrals/topics}"
kafka_topics="${KAFKA_HOME:-/opt/kafka}/bin/kafka-topics.sh"

specs=""
if [ "$#" -gt 0 ]; then
  specs="$*"
else
  for file in "$topics_dir"/*; do
    [ -f "$file" ] || continue
    specs="$specs $(basename "$file"):$(tr -d ' \n' < "$file")"
  done
fi
[ -n "$specs" ] || { echo "no topics given" >&2; exit 2; }

# From here on "$@" holds the client options only.
if [ -n "${KAFKA_COMMAND_CONFIG:-}" ] && [ -f "$KAFKA_COMMAND_CONFIG" ]; then
  set -- --command-config "$KAFKA_COMMAND_CONFIG"
else
  set --
fi

existing="$("$kafka_topics" --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" "$@" --list)"
for spec in $specs; do
  topic="${spec%%:*}"
  partitions="${spec##*:}"
  for name in "$topic" "$topic.dlq"; do
    if printf '%s\n' "$existing" | grep -qxF "$name"; then
      echo "exists:  $name"
      continue
    fi
    policy="delete"
    case "$compacted" in *" $name "*) policy="compact" ;; esac
    "$kafka_topics" --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" "$@" --create --if-not-exists \
      --topic "$name" --partitions "$partitions" --replication-factor "$replication" \
      --config "min.insync.replicas=$min_isr" --config "cleanup.policy=$policy"
    echo "created: $name ($partitions partitions, replication factor $replication, $policy)"
  done
done
