"""The intake service: a partner front end opens a patient's second-opinion case here, the case
holder fills it in, consents and submits it, and intake moves it through its lifecycle as the
other services report (documents, language checks, referrals), telling them by events
(docs/architecture.md, "intake")."""
