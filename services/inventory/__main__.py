"""`python -m services.inventory`: the inventory service on uvicorn."""

from __future__ import annotations

from services.inventory.bootstrap import create_app
from services.inventory.settings import InventorySettings
from shared.observability.logging import configure_logging
from shared.observability.tracing import configure_tracing
from shared.runtime import configured, serve


def main() -> None:
    settings = configured("inventory", InventorySettings)
    configure_logging(settings.service_name, settings.log_level)
    configured("inventory", lambda: configure_tracing(settings.service_name))
    serve(create_app(settings), host=settings.http_host, port=settings.http_port)


if __name__ == "__main__":
    main()
