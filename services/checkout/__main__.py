"""`python -m services.checkout`: serve the checkout API (and its relay and consumer)."""

from __future__ import annotations

from services.checkout.bootstrap import create_app
from services.checkout.settings import CheckoutSettings
from shared.observability.logging import configure_logging
from shared.observability.tracing import configure_tracing
from shared.runtime import configured, serve


def main() -> None:
    settings = configured("checkout", CheckoutSettings)
    configure_logging(settings.service_name, settings.log_level)
    configured("checkout", lambda: configure_tracing(settings.service_name))
    app = configured("checkout", lambda: create_app(settings))
    serve(app, host=settings.http_host, port=settings.http_port)


if __name__ == "__main__":
    main()
