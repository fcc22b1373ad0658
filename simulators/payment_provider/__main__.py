"""`python -m simulators.payment_provider`: the payment-provider simulator on uvicorn."""

from __future__ import annotations

from shared.auth import AuthSettings
from shared.observability.logging import configure_logging
from shared.observability.tracing import configure_tracing
from shared.runtime import configured, serve
from simulators.payment_provider.bootstrap import create_app
from simulators.payment_provider.settings import SimulatorSettings


def main() -> None:
    settings = configured("simulator", SimulatorSettings)
    configure_logging(settings.service_name, settings.log_level)
    configured("simulator", lambda: configure_tracing(settings.service_name))
    app = configured("simulator", lambda: create_app(settings, AuthSettings()))
    serve(app, host=settings.http_host, port=settings.http_port)


if __name__ == "__main__":
    main()
