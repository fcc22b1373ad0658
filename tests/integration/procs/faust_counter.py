"""A faust worker for the platform tests: counts records per key in a changelog-backed Table and
serves what this worker holds at `GET /counts/` on faust's own web server.

Configured from the environment only (read when the app is built, never at import):
`FAUST_COUNTER_BOOTSTRAP`, `FAUST_COUNTER_APP_ID` (also the consumer group and the prefix of the
topics faust creates), `FAUST_COUNTER_SOURCE_TOPIC`, `FAUST_COUNTER_PARTITIONS` (the source's),
`FAUST_COUNTER_DATADIR`, `FAUST_COUNTER_STORE` (`memory://` or `rocksdb://`),
`FAUST_COUNTER_WEB_PORT`, `FAUST_COUNTER_STANDBY_REPLICAS` (default 0).

    python -m tests.integration.procs.faust_counter worker -l info
"""

from __future__ import annotations

import os
from typing import Any

import faust


def create_app(env: dict[str, str]) -> faust.App:
    source_name = env["FAUST_COUNTER_SOURCE_TOPIC"]
    partitions = int(env.get("FAUST_COUNTER_PARTITIONS", "1"))
    app = faust.App(
        env["FAUST_COUNTER_APP_ID"],
        broker=f"kafka://{env['FAUST_COUNTER_BOOTSTRAP']}",
        store=env.get("FAUST_COUNTER_STORE", "memory://"),
        datadir=env["FAUST_COUNTER_DATADIR"],
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=1,
        topic_partitions=partitions,
        # none by default: a worker taking over partitions restores them from the changelog
        table_standby_replicas=int(env.get("FAUST_COUNTER_STANDBY_REPLICAS", "0")),
        # the broker's floor (group.min.session.timeout.ms) is 6 s; faust's default of 60 s
        # would leave a SIGKILLed worker's partitions unserved for a minute
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=0.5,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=int(env["FAUST_COUNTER_WEB_PORT"]),
    )
    source = app.topic(
        source_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    # changelog partition = source partition of the record that set the key, so the table must
    # have as many partitions as the source
    counts = app.Table(
        "counts",
        default=int,
        partitions=partitions,
        key_type=str,
        value_type=int,  # str and int keys/values go to the changelog as JSON
    )

    @app.agent(source)
    async def count(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            counts[event.key.decode()] += 1

    @app.page("/counts/")
    async def show(web: faust.web.View, request: faust.web.Request) -> Any:
        actives = app.assignor.assigned_actives()
        return web.json(
            {
                # what this worker's store answers, stale keys of revoked partitions included
                "counts": dict(counts.items()),
                "active": sorted(tp.partition for tp in actives if tp.topic == source_name),
            }
        )

    return app


if __name__ == "__main__":
    create_app(dict(os.environ)).main()
