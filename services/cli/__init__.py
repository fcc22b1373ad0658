"""The `leadline` command line for operators (issue 14): health, topics and lag, events, dead
letters, sagas, live rebuilds and traces, over the same Kafka, PostgreSQL and HTTP the services
use. It reads other services' data only through those, never their code."""
