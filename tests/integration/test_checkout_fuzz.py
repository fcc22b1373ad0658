"""A property-based fuzz over checkout's OpenAPI document (schemathesis): valid and invalid
requests to every route, authenticated, against the app served by uvicorn on real PostgreSQL.
No request may get a 5xx, and every answer must match what the document declares."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.checkout.bootstrap import create_app
from services.checkout.settings import CheckoutSettings
from shared.auth import AuthSettings, mint_token
from tests.support import eventually, unique

pytestmark = pytest.mark.integration
AUTH = AuthSettings(jwt_secret="fuzz-test-secret-that-is-long-enough-for-hs256")
EXAMPLES_PER_PASS = 120
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def fuzz(strategy: st.SearchStrategy[Any], base_url: str, headers: dict[str, str]) -> None:
    @settings(
        max_examples=EXAMPLES_PER_PASS,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def one_request(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)

    one_request()


async def test_fuzzing_the_openapi_document_finds_no_server_error(
    pg_dsn: str, kafka_bootstrap: str
) -> None:
    # the HTTP surface alone: no relay or consumer, so readiness checks Postgres and Kafka only
    app = create_app(
        CheckoutSettings(
            database_url=pg_dsn,
            kafka_bootstrap_servers=kafka_bootstrap,
            topic_prefix=unique("fuzz") + ".",
            run_consumer=False,
            run_relay=False,
        ),
        AUTH,
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None))
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or serving.done(), bool, what="serving")
        assert server.started, serving.exception()
        base_url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        schema = schemathesis.openapi.from_dict(app.openapi())
        headers = {"Authorization": f"Bearer {mint_token(AUTH, 'fuzzer')}"}
        async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:
            placed = await client.post(
                "/orders", json={"lines": [{"sku": "TEA-001", "quantity": 1}]}
            )
        # random ids almost never name an order: one pass aims every route at a real one
        strategies = [
            schema.as_strategy(generation_mode=GenerationMode.POSITIVE),
            schema.as_strategy(generation_mode=GenerationMode.NEGATIVE),
            schema.as_strategy(path_parameters={"order_id": placed.json()["order_id"]}),
        ]
        for strategy in strategies:
            await asyncio.to_thread(fuzz, strategy, base_url, headers)
    finally:
        server.should_exit = True
        await serving
