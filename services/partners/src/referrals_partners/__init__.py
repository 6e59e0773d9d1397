"""The partners service: the registry of cancer centers and their keys, routing a ready case to
the best eligible center and re-routing it on a decline or an expiry, the centers' answers and
opinions (`/v1/partner`), the operators' tools (`/v1/ops`) and a patient's "why this center"."""
