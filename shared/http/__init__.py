"""HTTP pieces every service mounts: health, readiness and metrics."""
