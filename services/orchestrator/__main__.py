"""`python -m services.orchestrator`: the order saga (faust) and its inspection API on uvicorn."""

from __future__ import annotations

from services.orchestrator.bootstrap import create_app
from services.orchestrator.settings import OrchestratorSettings
from shared.auth import AuthSettings
from shared.observability.logging import configure_logging
from shared.observability.tracing import configure_tracing
from shared.runtime import configured, serve


def main() -> None:
    settings = configured("orchestrator", OrchestratorSettings)
    configure_logging(settings.service_name, settings.log_level)
    configured("orchestrator", lambda: configure_tracing(settings.service_name))
    app = configured("orchestrator", lambda: create_app(settings, AuthSettings()))
    serve(app, host=settings.http_host, port=settings.http_port)


if __name__ == "__main__":
    main()
