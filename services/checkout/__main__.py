"""`python -m services.checkout`: serve the checkout API (and its relay and consumer)."""

from __future__ import annotations

from services.checkout.bootstrap import create_app
from services.checkout.settings import CheckoutSettings
from shared.observability.logging import configure_logging
from shared.runtime import serve


def main() -> None:
    settings = CheckoutSettings()
    configure_logging(settings.service_name, settings.log_level)
    serve(create_app(settings), host=settings.http_host, port=settings.http_port)


if __name__ == "__main__":
    main()
