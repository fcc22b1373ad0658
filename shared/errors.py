"""What a message handler raises to tell the consumer runner how to treat a failure.

Any other exception counts as transient: the runner retries it in place with backoff, up to
`ConsumerSettings.max_attempts`, then dead-letters the message as "handler-failed".
"""

from __future__ import annotations


class PermanentError(Exception):
    """The message can never be handled as it stands (a business rule refuses it, a reference
    it names does not exist). No retry: it goes to the dead-letter topic at once, reason
    "rejected", with this error's text."""


class TransientError(Exception):
    """Worth another try (a lock timeout, a serialization conflict). Behaves like any other
    unexpected exception; raise it to say so explicitly."""
