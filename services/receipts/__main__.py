"""`python -m services.receipts`: the receipts service on uvicorn."""

from __future__ import annotations

from services.receipts.bootstrap import create_app
from services.receipts.settings import ReceiptsSettings
from shared.auth import AuthSettings
from shared.observability.logging import configure_logging
from shared.observability.tracing import configure_tracing
from shared.runtime import configured, serve


def main() -> None:
    settings = configured("receipts", ReceiptsSettings)
    configure_logging(settings.service_name, settings.log_level)
    configured("receipts", lambda: configure_tracing(settings.service_name))
    app = configured("receipts", lambda: create_app(settings, AuthSettings()))
    serve(app, host=settings.http_host, port=settings.http_port)


if __name__ == "__main__":
    main()
