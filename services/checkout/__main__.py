"""`python -m services.checkout`: serve the checkout API (and its relay and consumer)."""

from __future__ import annotations

import uvicorn

from services.checkout.bootstrap import create_app
from services.checkout.settings import CheckoutSettings
from shared.observability.logging import configure_logging


def main() -> None:
    settings = CheckoutSettings()
    configure_logging(settings.service_name, settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # keep uvicorn's lines in our JSON stream
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
