"""Helper processes the integration tests start, signal and kill for real."""
