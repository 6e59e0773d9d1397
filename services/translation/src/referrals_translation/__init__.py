"""The translation service: reads each document stored for a case once (its languages, or why it
cannot be read) and, once the case's destination is known, gives the document its language
verdict (accepted, translation required, unreadable) as an event. A consumer and an outbox
relay, no HTTP API; the use cases are in `service`, the wiring in `bootstrap`."""
