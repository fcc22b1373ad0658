import asyncpg

from tests.conftest import TopicFactory


async def test_asyncpg_round_trip_in_a_fresh_database(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        await conn.execute("INSERT INTO t VALUES (1, 'x')")
        assert await conn.fetchval("SELECT v FROM t WHERE id = 1") == "x"
        assert "PostgreSQL" in await conn.fetchval("SELECT version()")
    finally:
        await conn.close()


async def test_topic_factory_makes_unique_topics(new_topic: TopicFactory) -> None:
    a = await new_topic("smoke", partitions=2)
    b = await new_topic("smoke", partitions=2)
    assert a != b
