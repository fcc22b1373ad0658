"""`python -m services.receipts`: the receipts service on uvicorn."""

from __future__ import annotations

import uvicorn

from services.receipts.bootstrap import create_app
from services.receipts.settings import ReceiptsSettings
from shared.auth import AuthSettings
from shared.observability.logging import configure_logging


def main() -> None:
    settings = ReceiptsSettings()
    configure_logging(settings.service_name, settings.log_level)
    app = create_app(settings, AuthSettings())
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # keep uvicorn's lines in our JSON stream
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
