"""`python -m services.inventory`: the inventory service on uvicorn."""

from __future__ import annotations

import uvicorn

from services.inventory.bootstrap import create_app
from services.inventory.settings import InventorySettings
from shared.observability.logging import configure_logging


def main() -> None:
    settings = InventorySettings()
    configure_logging(settings.service_name, settings.log_level)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # keep uvicorn's lines in our JSON stream
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
