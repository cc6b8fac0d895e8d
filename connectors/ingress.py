"""The webhook ingress: the WhatsApp webhooks served by a process of their own.

The Rasa server runs NLU and policies synchronously on its one event loop, so a webhook it
serves waits behind whatever turn is running: under load its acknowledgement takes tens of
milliseconds. This process serves the very same routes (`/webhooks/waha/webhook`,
`/webhooks/whatsapp/webhook`, Meta's verification GET) with the same channel code, but runs
no turns: it verifies, dedupes and records each message in the inbound log and answers. The
Rasa server's consumer runs the turns. Point the gateways here (INGRESS_PORT); the Rasa
server keeps serving the same routes too, so either works.

    python -m connectors.ingress        (make run starts it when a WhatsApp channel is set up)
"""
import importlib
import logging
import os
import sys
from typing import Any, List

from sanic import Sanic, response
from sanic.request import Request

from helpdesk.config import channel_config
from helpdesk.errors import ConfigError
from helpdesk.launch import enabled_channels
from helpdesk.logs import apply_logging_file, configure_logging
from helpdesk.settings import load_settings

logger = logging.getLogger(__name__)

WHATSAPP_CHANNELS = ("connectors.waha.WahaInput", "connectors.meta.MetaInput")


def channels() -> List[Any]:
    found = []
    for path, _credentials in enabled_channels().items():
        if path not in WHATSAPP_CHANNELS:
            continue
        module, name = path.rsplit(".", 1)
        found.append(getattr(importlib.import_module(module), name).from_credentials(None))
    return found


def build_app() -> Sanic:
    app = Sanic("helpdesk_ingress", configure_logging=False)
    # this app serves only webhooks: no body is ever larger than the channels' limit (the
    # webhook routes also read theirs with it, connectors/body.py)
    app.config.REQUEST_MAX_SIZE = channel_config().max_body_bytes
    served = channels()
    for channel in served:
        # no message handler: this process records messages, the Rasa server runs the turns
        app.blueprint(channel.blueprint(None), url_prefix=f"/webhooks/{channel.url_prefix()}")

    @app.get("/health")
    async def health(request: Request) -> Any:
        shared = served[0].shared if served else None
        redis_ok = False
        if shared is not None:
            try:
                redis_ok = bool(await shared.redis.ping())
            except Exception:
                redis_ok = False
        # with no WhatsApp channel configured there is nothing to serve, and nothing wrong
        status = "ok" if not served or redis_ok else "degraded"
        return response.json({"status": status, "channels": [c.name() for c in served],
                              "redis": redis_ok}, status=200 if status == "ok" else 503)

    return app


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    path = os.environ.get("HELPDESK_LOGGING_CONFIG")
    if path:
        apply_logging_file(path)
    try:
        app = build_app()
    except ConfigError as error:  # a channel without its secret, say: one line, no traceback
        print(f"helpdesk: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    port = int(os.environ.get("INGRESS_PORT") or 5007)
    host = os.environ.get("INGRESS_HOST") or "0.0.0.0"
    logger.info("webhook ingress listening", extra={"port": port})
    app.run(host=host, port=port, access_log=False, workers=1, motd=False)


if __name__ == "__main__":
    main()
