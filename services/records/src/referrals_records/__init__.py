"""The records service: medical documents into MinIO, safely."""
