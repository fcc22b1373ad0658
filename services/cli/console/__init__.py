"""The operator console: `leadline console` serves a small web page of what the CLI shows —
sagas by state and one saga's timeline, dead letters with re-drive, consumer lag per group and
each service's outbox backlog — to the holder of an admin token. Rendered on the server, no
script; it reads through the CLI's own modules, so both tell the same story."""
