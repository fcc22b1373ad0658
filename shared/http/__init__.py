"""HTTP pieces every service mounts: health, readiness, metrics and request middleware."""
