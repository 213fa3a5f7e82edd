"""Names shared across modules: headers, Redis key prefixes, topic suffixes."""

# CloudEvents Kafka protocol binding, binary content mode (attributes as headers).
HEADER_ID = "ce_id"
HEADER_TYPE = "ce_type"
HEADER_SOURCE = "ce_source"
HEADER_TIME = "ce_time"
HEADER_SPECVERSION = "ce_specversion"
HEADER_DATASCHEMA = "ce_dataschema"
HEADER_TRACEPARENT = "traceparent"
CLOUDEVENTS_SPECVERSION = "1.0"

# Added to a dead letter next to the original headers.
HEADER_DLQ_REASON = "dlq_reason"
HEADER_DLQ_CONSUMER = "dlq_consumer"
HEADER_DLQ_ATTEMPTS = "dlq_attempts"
HEADER_DLQ_ORIGIN = "dlq_origin"

DEAD_LETTER_TOPIC_SUFFIX = ".dlq"
EVENTS_TOPIC_SUFFIX = ".events"

REDIS_DEDUPE_PREFIX = "choreo:seen"
