"""The projection's own metrics: how far behind each view is, and how far a rebuild has got."""

from __future__ import annotations

from prometheus_client import Gauge

VIEW_LAG = Gauge(
    "leadline_projection_view_lag",
    "Records the view's consumer group has not applied yet, over its topics' partitions.",
    ["view"],
)
REBUILD_PROGRESS = Gauge(
    "leadline_projection_rebuild_progress",
    "Share of the records a running (or the last) rebuild has replayed, 0 to 1.",
    ["view"],
)
REBUILD_RECORDS = Gauge(
    "leadline_projection_rebuild_records",
    "Records a running (or the last) rebuild has replayed so far.",
    ["view"],
)
