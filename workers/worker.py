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
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict

import redis
from rq import Queue, Worker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT

from helpdesk import whatsapp
from helpdesk.tickets import register_human_sender
from helpdesk.logs import configure_logging, correlation
from helpdesk.settings import load_settings, support_escalation_chat
from helpdesk import queues
import workers.announcements  # noqa: F401 - imported once here for every work horse
import workers.zoho_jobs  # noqa: F401
from workers.job_control import RunAgain
from workers.chatwoot_jobs import schedule_recovery
from workers.retention_jobs import restore_opt_outs_at_start, schedule_retention
from workers.scheduler import RedisClockJob, Scheduler, release_dead_holders
from workers.zoho_periodic import start_periodic_jobs
from workers.zoho_resources import Context, context

logger = logging.getLogger(__name__)

# how often a worker without a running scheduler tries to take RQ's scheduler lock (RQ: at its
# maintenance only, which an idle worker reaches every 405 s)
SCHEDULER_RETRY_SECONDS = 5


class CorrelatedWorker(Worker):
    """Runs each job with the correlation id of the message that caused it, and takes RQ's
    scheduler over within seconds when its holder is gone (workers/scheduler.py)."""

    _scheduler_burst = True
    _scheduler_tried_at = 0.0

    def _start_scheduler(self, burst: bool = False, logging_level: str = "INFO",
                         date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
                         log_format: str = DEFAULT_LOGGING_FORMAT) -> None:
        # RQ's Worker._start_scheduler with the Scheduler of workers/scheduler.py, and the
        # lock of a dead worker of this host released first
        self.scheduler = Scheduler(self.queues, connection=self.connection, logging_level=logging_level,
                                   date_format=date_format, log_format=log_format, serializer=self.serializer)
        self._scheduler_burst = burst
        self._scheduler_tried_at = time.monotonic()
        release_dead_holders(self.connection, self.queue_names(), self.name)
        self.scheduler.acquire_locks()
        if self.scheduler.acquired_locks:
            if burst:
                self.scheduler.enqueue_scheduled_jobs()
                self.scheduler.release_locks()
            else:
                self.scheduler.start()

    def _scheduler_missing(self) -> bool:
        """A scheduler is wanted here (not burst) and this worker's is not running."""
        scheduler = self.scheduler
        if scheduler is None or self._scheduler_burst:
            return False
        return not (scheduler._process and scheduler._process.is_alive())

    @property
    def dequeue_timeout(self) -> int:
        # an idle worker is back from its wait every few seconds (RQ: 405 s) to retry the lock
        return min(super().dequeue_timeout, SCHEDULER_RETRY_SECONDS)

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return super().should_run_maintenance_tasks or (
            self._scheduler_missing() and time.monotonic() - self._scheduler_tried_at >= SCHEDULER_RETRY_SECONDS)

    def run_maintenance_tasks(self) -> None:
        if self._scheduler_missing() and time.monotonic() - self._scheduler_tried_at >= SCHEDULER_RETRY_SECONDS:
            self._scheduler_tried_at = time.monotonic()
            release_dead_holders(self.connection, self.queue_names(), self.name, self.scheduler.acquired_locks)
            self.scheduler.acquire_locks(auto_start=True)
        if super().should_run_maintenance_tasks:  # RQ's own, every maintenance_interval
            super().run_maintenance_tasks()

    def perform_job(self, job: Any, queue: Queue) -> bool:
        with correlation((job.meta or {}).get("correlation_id")):
            return super().perform_job(job, queue)

    def handle_exception(self, job: Any, *exc_info: Any) -> Any:
        # a planned deferral (circuit open, 429, quota) is not an error: RQ would log a traceback
        if exc_info and isinstance(exc_info[1], RunAgain):
            logger.info("job deferred", extra={"job_id": job.id, "reason": str(exc_info[1])})
            return True
        return super().handle_exception(job, *exc_info)


def warm_up() -> Context:
    """Worker start-up, before work horses are forked: the job modules are imported (above)
    and the Zoho jobs' context built once. Without it every job pays for the imports, the YAML
    and the ledger's schema check (about half a second on this machine)."""
    ctx = context()
    ctx.ledger.engine.dispose()  # no connection is shared with the work horses
    return ctx


def whatsapp_notice_sender(chat: str) -> Callable[[Dict[str, Any]], None]:
    """The support team's WhatsApp chat as a way to reach a person (human notices)."""

    def send(notice: Dict[str, Any]) -> None:
        whatsapp.send_text(chat, notice["text"])

    return send


def prepare(connection: redis.Redis, burst: bool) -> None:
    """Per-process start-up: imports and the ledger opened once (a job would pay ~0.5 s
    otherwise), the periodic jobs scheduled (Zoho's and retention), opt-outs restored from the
    ledger after a Redis loss, the support team's chat registered. A broken Zoho config is
    logged and leaves the other queues working."""
    chat = support_escalation_chat()
    if chat:
        register_human_sender(whatsapp_notice_sender(chat))
    try:
        warm_up()
        if not burst:
            start_periodic_jobs(connection)
    except Exception:
        logger.exception("Zoho jobs not prepared; the other queues still run")
    try:
        if not burst:
            schedule_recovery(connection)
    except Exception:
        logger.exception("chatwoot recovery pass not scheduled; the other queues still run")
    try:
        restore_opt_outs_at_start(connection)
        if not burst:
            schedule_retention(connection)
    except Exception:
        logger.exception("retention not scheduled; the other queues still run")


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
    base_port = int((os.environ.get("WORKER_HEALTH_PORT") or "5056"))
    port = None
    # with several workers (make run WORKERS=n) each takes the next free port
    for candidate in range(base_port, base_port + 16):
        try:
            serve_health(connection, candidate)
            port = candidate
            break
        except OSError:
            continue
    if port is None:
        logger.warning("worker health endpoint not started", extra={"port": base_port})
    prepare(connection, burst)
    worker = CorrelatedWorker([Queue(name, connection=connection) for name in queues.ALL],
                              connection=connection, maintenance_interval=60, job_class=RedisClockJob)
    logger.info("worker starting", extra={"queues": list(queues.ALL), "health_port": port})
    worker.work(with_scheduler=True, burst=burst, logging_level=settings.log_level)


if __name__ == "__main__":
    main(sys.argv[1:])
