"""What the benchmarks share (bench/harness.py), and that it is the only thing they share."""
import ast
import asyncio
import hashlib
import hmac
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from bench import harness
from helpdesk.launch import free_port

BENCH = Path(harness.__file__).resolve().parent


def test_no_benchmark_imports_another():
    benchmarks = {path.stem for path in BENCH.glob("bench_*.py")}
    wrong = []
    for path in sorted(BENCH.glob("bench_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                if name.split(".")[-1] in benchmarks:
                    wrong.append(f"{path.name} imports {name}")
    assert benchmarks and wrong == []


def test_summary_of_a_result():
    result = harness.Result(latencies_ms=[10.0, 20.0, 30.0, 40.0], failures=["x"], requests=5,
                            confirmations=2, wall_s=2.0)
    summary = harness.summary(result)
    assert summary["requests"] == 5 and summary["ok"] == 4 and summary["failures"] == 1
    assert summary["messages_per_s"] == 2.5
    assert summary["p50_ms"] == 25.0 and summary["max_ms"] == 40.0 and summary["mean_ms"] == 25.0
    assert summary["p50_first_quarter_ms"] == 10.0 and summary["p50_last_quarter_ms"] == 40.0
    assert summary["ticket_confirmations"] == 2


def test_shorten_collapses_spaces_and_cuts_with_an_ellipsis():
    assert harness.shorten("a  b\n c", 10) == "a b c"
    assert harness.shorten("abcdefghij", 5) == "abcd…"


def test_log_errors_counts_json_and_text_error_lines(tmp_path):
    log = tmp_path / "rasa.log"
    log.write_text('{"level": "INFO", "msg": "ok"}\n{"level": "ERROR", "msg": "bad"}\n'
                   "2024-01-01 10:00:00 CRITICAL rasa - boom\nTraceback (most recent call last):\n",
                   encoding="utf-8")
    found = harness.log_errors(log)
    assert found["log"] == "rasa.log" and found["errors"] == 3 and len(found["samples"]) == 3
    assert harness.log_errors(tmp_path / "missing.log")["errors"] is None


def test_cleanup_stops_its_process_groups_and_removes_its_directories():
    cleanup = harness.Cleanup(keep=False)
    directory = cleanup.directory(Path(tempfile.mkdtemp(prefix="bench-test-")))
    process = cleanup.process("sleeper", subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True))
    cleanup.run()
    assert process.poll() is not None
    assert not directory.exists()
    assert cleanup.processes == [] and cleanup.dirs == []


def test_event_for_is_a_waha_message_event():
    event = json.loads(harness.event_for("5491155550000", "hola"))
    assert event["event"] == "message" and event["me"]["id"] == f"{harness.WAHA_BOT}@c.us"
    assert event["payload"]["from"] == "5491155550000@c.us" and event["payload"]["body"] == "hola"
    assert event["payload"]["fromMe"] is False


def test_the_fake_waha_records_replies_and_post_signs_the_webhook():
    async def scenario():
        fake = harness.FakeWaha()
        await fake.start()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"http://127.0.0.1:{fake.port}/api/sendText",
                                        json={"chatId": "549@c.us", "text": "hola"}) as answer:
                    assert answer.status == 201
                async with session.post(f"http://127.0.0.1:{fake.port}/api/startTyping",
                                        json={"chatId": "549@c.us"}) as answer:
                    assert answer.status == 201
                assert await fake.wait_replies("549@c.us", 1, 5)
                assert not await fake.wait_replies("549@c.us", 2, 0.2)

                seen = {}

                async def webhook(request):
                    seen["body"] = await request.read()
                    seen["headers"] = dict(request.headers)
                    return web.Response(text="ok")

                app = web.Application()
                app.router.add_post("/hook", webhook)
                runner = web.AppRunner(app)
                await runner.setup()
                port = free_port()
                await web.TCPSite(runner, "127.0.0.1", port).start()
                try:
                    body = harness.event_for("549", "hola")
                    elapsed = await harness.post(session, f"http://127.0.0.1:{port}/hook", body)
                finally:
                    await runner.cleanup()
        finally:
            await fake.stop()
        return fake, seen, body, elapsed

    fake, seen, body, elapsed = asyncio.run(scenario())
    assert [text for _, text in fake.received["549@c.us"]] == ["hola"]
    assert seen["body"] == body and elapsed >= 0
    expected = hmac.new(harness.WAHA_HMAC_KEY.encode(), body, hashlib.sha512).hexdigest()
    assert seen["headers"]["X-Webhook-Hmac"] == expected
    assert seen["headers"]["X-Webhook-Hmac-Algorithm"] == "sha512"


def test_cpu_seconds_counts_the_whole_process_group():
    """A launcher whose child does the work (as helpdesk.launch runs Rasa): the child's CPU
    time counts for the group."""
    busy = ("import subprocess, sys; subprocess.run([sys.executable, '-c', "
            "'import time\\nend = time.process_time() + 0.6\\nwhile time.process_time() < end: pass'])")
    process = subprocess.Popen([sys.executable, "-c", busy + "; import time; time.sleep(30)"],
                               start_new_session=True)
    cleanup = harness.Cleanup(keep=False)
    cleanup.process("busy", process)
    try:
        deadline = time.monotonic() + 20
        while harness.cpu_seconds(process.pid) < 0.6 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the child has ended: its time is its parent's now
        assert 0.6 <= harness.cpu_seconds(process.pid) < 5
    finally:
        cleanup.run()
