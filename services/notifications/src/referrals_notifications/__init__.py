"""The notifications service: tells the patient (e-mail or SMS, in the patient's language) and the
partner front end (signed webhooks) what the platform's events mean for the case, and alerts the
operators. A consumer (events → delivery rows, `service`), a sender (rows → messages, `sender`)
and an outbox relay, no HTTP API; the wiring is in `bootstrap`."""
