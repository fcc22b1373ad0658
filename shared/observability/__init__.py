"""Logs, metrics and liveness shared by every service."""
