"""The RQ worker process: JSON logs, correlation ids from job meta, RQ's scheduler, and a
small health endpoint (`GET /health` on WORKER_HEALTH_PORT, default 5056).

    python -m workers.worker            (what `make run` starts through helpdesk.launch)
    python -m workers.worker --burst    (work through the queues, then exit)
"""
import json
import logging
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis
from rq import Queue, Worker

from helpdesk.logs import configure_logging, correlation
from helpdesk.settings import load_settings
from workers import queues

logger = logging.getLogger(__name__)


class CorrelatedWorker(Worker):
    """Runs each job with the correlation id of the message that caused it."""

    def perform_job(self, job: Any, queue: Queue) -> bool:
        with correlation((job.meta or {}).get("correlation_id")):
            return super().perform_job(job, queue)


def serve_health(connection: redis.Redis, port: int) -> ThreadingHTTPServer:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.rstrip("/") != "/health":
                self.send_error(404)
                return
            try:
                connection.ping()
                body, status = {"status": "ok", "checks": {"redis": {"status": "ok"}}}, 200
            except redis.RedisError as error:
                body = {"status": "degraded", "checks": {"redis": {"status": "down", "error": str(error)}}}
                status = 503
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Health)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


def main(argv: list) -> None:
    burst = "--burst" in argv  # work through the queues, then exit (tests, operators)
    settings = load_settings()
    configure_logging(settings.log_level)
    connection = redis.Redis.from_url(settings.redis_url)
    port = int((os.environ.get("WORKER_HEALTH_PORT") or "5056"))
    try:
        serve_health(connection, port)
    except OSError as error:
        logger.warning("worker health endpoint not started", extra={"port": port, "error": str(error)})
    worker = CorrelatedWorker([Queue(name, connection=connection) for name in queues.ALL], connection=connection)
    logger.info("worker starting", extra={"queues": list(queues.ALL), "health_port": port})
    worker.work(with_scheduler=True, burst=burst, logging_level=settings.log_level)


if __name__ == "__main__":
    main(sys.argv[1:])
