"""The webhook ingress: the webhooks served by a process of their own, the one port a
deployment exposes (INGRESS_HOST, default loopback: a reverse proxy with TLS on the same host
forwards to it; set 0.0.0.0 for a gateway on another host or container).

The Rasa server runs NLU and policies synchronously on its one event loop, so a webhook it
serves waits behind whatever turn is running: under load its acknowledgement takes tens of
milliseconds. This process serves the very same routes (`/webhooks/waha/webhook`,
`/webhooks/whatsapp/webhook`, Meta's verification GET) with the same channel code, but runs
no turns: it verifies, dedupes and records each message in the inbound log and answers (and
its media fetcher downloads WAHA files right away, connectors/whatsapp/media_fetch.py). The
Rasa server's consumer runs the turns. Point the gateways here (INGRESS_PORT); the Rasa
server keeps serving the same routes too (on loopback).

The Chatwoot agent webhook (`/webhooks/chatwoot/webhook`, when Chatwoot is configured) is
served here too: it never runs a turn either (it relays agent replies to the WhatsApp outbox
and queues hand-backs, Redis only), so it needs no message handler from the Rasa server.

`/ready` (beside `/health`): Redis, the ledger, the action server and each configured
integration's set-up (Zoho Desk: the last `make zoho-check`); 200, or 503 with what is not
ready, one line each (helpdesk/health.py `readiness`).

`/metrics` is served here too (Prometheus' text format, helpdesk/metrics/): the shared numbers
read from Redis, the ledger and RQ at each scrape, and this process's webhook acknowledgement
latency; only with `Authorization: Bearer METRICS_TOKEN` (without METRICS_TOKEN set: 404).

    python -m connectors.ingress        (make run starts it when a WhatsApp channel is set up)
"""
import asyncio
import importlib
import logging
import os
import sys
import time
from typing import Any, List, Optional

import redis

from sanic import Sanic, response
from sanic.request import Request

from helpdesk import metrics
from helpdesk.config import channel_config, chatwoot_config, llm_config
from helpdesk.errors import ConfigError
from helpdesk.health import readiness
from helpdesk.launch import DEFAULT_INGRESS_HOST, enabled_channels
from helpdesk.logs import apply_logging_file, configure_logging
from helpdesk.settings import load_settings
from helpdesk.tickets import Ledger

logger = logging.getLogger(__name__)

WHATSAPP_CHANNELS = ("connectors.waha.WahaInput", "connectors.meta.MetaInput")
# the channels served here: the WhatsApp ones and Chatwoot's (none of them uses Rasa's
# message handler in its webhook)
INGRESS_CHANNELS = WHATSAPP_CHANNELS + ("connectors.chatwoot.ChatwootInput",)


def channels() -> List[Any]:
    found = []
    for path, _credentials in enabled_channels().items():
        if path not in INGRESS_CHANNELS:
            continue
        module, name = path.rsplit(".", 1)
        found.append(getattr(importlib.import_module(module), name).from_credentials(None))
    return found


def build_app() -> Sanic:
    app = Sanic("helpdesk_ingress", configure_logging=False)
    served = channels()
    # this app serves only webhooks: no body is ever larger than the largest of their limits
    # (each webhook route also reads its body with its own limit, connectors/body.py)
    limits = [channel_config().max_body_bytes]
    if any(c.name() == "chatwoot" for c in served):
        limits.append(chatwoot_config().webhook_max_body_bytes)
    app.config.REQUEST_MAX_SIZE = max(limits)
    for channel in served:
        # no message handler: this process records messages, the Rasa server runs the turns
        app.blueprint(channel.blueprint(None), url_prefix=f"/webhooks/{channel.url_prefix()}")

    serve_metrics(app, served)

    @app.get("/health")
    async def health(request: Request) -> Any:
        shared = next((c.shared for c in served if hasattr(c, "shared")), None)
        redis_ok = False
        if shared is not None:
            try:
                redis_ok = bool(await shared.redis.ping())
            except Exception:
                redis_ok = False
        # with no WhatsApp channel configured there is nothing to serve, and nothing wrong
        status = "ok" if shared is None or redis_ok else "degraded"
        return response.json({"status": status, "channels": [c.name() for c in served],
                              "redis": redis_ok}, status=200 if status == "ok" else 503)

    @app.get("/ready")
    async def ready(request: Request) -> Any:
        # beside /health: can the bot serve a ticket end to end (Redis, ledger, action
        # server, each configured integration's set-up)? 503 names what is not, one line each
        ok, body = await readiness(load_settings())
        return response.json(body, status=200 if ok else 503)

    return app


def serve_metrics(app: Sanic, served: List[Any]) -> None:
    """`/metrics` (Prometheus' text format: helpdesk/metrics/), only with `Authorization:
    Bearer METRICS_TOKEN` (off, 404, without METRICS_TOKEN set); and the webhooks'
    acknowledgement latency, this process's own histogram."""
    token = metrics.metrics_token()
    process = metrics.process_name("ingress")
    prefixes = {f"/webhooks/{c.url_prefix()}/": c.name() for c in served}
    registry: List[Any] = []  # built at the first scrape (a Redis client, the ledger)

    def build() -> Any:
        settings = load_settings()
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=5,
                                      socket_connect_timeout=2)
        try:
            budget: Optional[float] = llm_config().budgets.monthly_usd
        except ConfigError:
            budget = None
        return metrics.build_registry(metrics.HelpdeskCollector(
            client, None, channel_config().inbound_partitions, budget,
            ledger_factory=lambda: Ledger(settings.database_url)))

    def scrape() -> Any:
        if not registry:
            registry.append(build())
        return metrics.render(registry[0])

    @app.on_request
    async def started(request: Request) -> None:
        request.ctx.started = time.monotonic()

    @app.on_response
    async def acknowledged(request: Request, answer: Any) -> None:
        channel = next((name for prefix, name in prefixes.items()
                        if request.path.startswith(prefix)), None)
        began = getattr(request.ctx, "started", None)
        if channel is None or began is None or answer is None:
            return
        metrics.WEBHOOK_ACK_SECONDS.labels(process, channel, str(answer.status)).observe(
            time.monotonic() - began)

    @app.get("/metrics")
    async def metrics_page(request: Request) -> Any:
        if token is None:
            return response.json({"error": "not found"}, status=404)
        if not metrics.authorized(request.headers.get("authorization"), token):
            logger.warning("metrics scrape without the right token")
            return response.json({"error": "unauthorized"}, status=401,
                                 headers={"WWW-Authenticate": "Bearer"})
        body, content_type = await asyncio.to_thread(scrape)
        return response.raw(body, content_type=content_type)


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
    host = os.environ.get("INGRESS_HOST") or DEFAULT_INGRESS_HOST
    logger.info("webhook ingress listening", extra={"port": port})
    app.run(host=host, port=port, access_log=False, workers=1, motd=False)


if __name__ == "__main__":
    main()
