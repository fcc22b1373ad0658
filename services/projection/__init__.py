"""The read side (DESIGN §6): denormalised views of every `*.events` topic, and their queries."""
