"""The circuit breaker shared through the session's real Redis (helpdesk/circuit.py)."""
import threading

import pytest
import redis

from helpdesk.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitOpen


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def breaker(client, clock, **kwargs):
    return CircuitBreaker(client, "zoho", failure_threshold=5, recovery_seconds=60, clock=clock, **kwargs)


def test_opens_after_five_consecutive_failures(redis_client, clock):
    circuit = breaker(redis_client, clock)
    for _ in range(4):
        assert circuit.record_failure("503") is False
        assert circuit.before_call() is False  # still closed
    assert circuit.record_failure("503") is True
    with pytest.raises(CircuitOpen) as raised:
        circuit.before_call()
    assert raised.value.retry_after == pytest.approx(60, abs=0.01)
    assert raised.value.reason == "503"
    assert circuit.state().state == OPEN


def test_a_success_resets_the_count(redis_client, clock):
    circuit = breaker(redis_client, clock)
    for _ in range(4):
        circuit.record_failure("timeout")
    circuit.record_success()
    for _ in range(4):
        circuit.record_failure("timeout")
    assert circuit.state().state == CLOSED
    assert circuit.before_call() is False


def test_half_open_after_the_recovery_time_lets_exactly_one_probe(redis_client, clock):
    circuit = breaker(redis_client, clock)
    for _ in range(5):
        circuit.record_failure("503")
    clock.now += 59.9
    with pytest.raises(CircuitOpen):
        circuit.before_call()
    clock.now += 0.2
    assert circuit.state().state == HALF_OPEN
    assert circuit.before_call() is True  # the probe
    with pytest.raises(CircuitOpen) as waiting:  # everyone else waits for it, and looks again soon
        circuit.before_call()
    assert waiting.value.retry_after == pytest.approx(2.0, abs=0.01)
    circuit.record_success()
    assert circuit.state().state == CLOSED
    assert circuit.before_call() is False


def test_a_failed_probe_opens_again_for_the_recovery_time(redis_client, clock):
    circuit = breaker(redis_client, clock)
    for _ in range(5):
        circuit.record_failure("503")
    clock.now += 61
    assert circuit.before_call() is True
    assert circuit.record_failure("still 503") is True
    with pytest.raises(CircuitOpen) as raised:
        circuit.before_call()
    assert raised.value.retry_after == pytest.approx(60, abs=0.01)


def test_a_probe_that_never_reports_frees_the_half_open_slot(redis_client):
    # real time: a probe that died (killed worker) holds the slot only for probe_seconds
    circuit = CircuitBreaker(redis_client, "zoho", failure_threshold=1, recovery_seconds=0.2, probe_seconds=0.3)
    circuit.record_failure("503")
    import time

    time.sleep(0.25)
    assert circuit.before_call() is True
    with pytest.raises(CircuitOpen):
        circuit.before_call()
    time.sleep(0.35)
    assert circuit.before_call() is True


def test_open_until_a_time_and_never_shortened(redis_client, clock):
    circuit = breaker(redis_client, clock)
    circuit.open_until(clock.now + 3600, "THRESHOLD_EXCEEDED")
    circuit.open_for(10, "something shorter")
    for _ in range(10):
        circuit.record_failure("late failure")
    with pytest.raises(CircuitOpen) as raised:
        circuit.before_call()
    assert raised.value.retry_after == pytest.approx(3600, abs=0.01)
    assert raised.value.reason == "THRESHOLD_EXCEEDED"
    clock.now += 3600
    assert circuit.before_call() is True


def test_shared_by_every_process_through_redis(redis_url, redis_client, clock):
    # two clients, as two worker processes would have
    other = redis.Redis.from_url(redis_url)
    first, second = breaker(redis_client, clock), breaker(other, clock)
    for _ in range(3):
        first.record_failure("503")
    for _ in range(2):
        second.record_failure("503")
    with pytest.raises(CircuitOpen):
        first.before_call()
    clock.now += 60
    winners = []

    def probe(circuit):
        try:
            winners.append(circuit.before_call())
        except CircuitOpen:
            winners.append(None)

    threads = [threading.Thread(target=probe, args=(c,)) for c in (first, second) * 5]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert winners.count(True) == 1 and winners.count(None) == 9
    other.close()


def test_backends_are_separate(redis_client, clock):
    zoho, chatwoot = breaker(redis_client, clock), CircuitBreaker(redis_client, "chatwoot", clock=clock)
    for _ in range(5):
        zoho.record_failure("503")
    assert chatwoot.before_call() is False
    with pytest.raises(CircuitOpen):
        zoho.before_call()


def test_a_late_success_does_not_close_a_circuit_forced_open_until_the_quota_resets(redis_url, redis_client, clock):
    # worker A hits THRESHOLD_EXCEEDED and opens until midnight; worker B's create, sent before
    # that, answers 200 afterwards and reports a success
    other = redis.Redis.from_url(redis_url)
    first, second = breaker(redis_client, clock), breaker(other, clock)
    first.open_until(clock.now + 5 * 3600, "THRESHOLD_EXCEEDED")
    assert second.record_success() is False
    with pytest.raises(CircuitOpen) as raised:
        second.before_call()
    assert raised.value.retry_after == pytest.approx(5 * 3600, abs=0.01)
    assert raised.value.reason == "THRESHOLD_EXCEEDED"
    # at its time it half-opens as usual, and the probe's success closes it
    clock.now += 5 * 3600
    assert first.before_call() is True
    assert first.record_success() is True
    assert second.state().state == CLOSED
    other.close()


def test_a_late_success_does_not_close_a_circuit_forced_open_for_refused_credentials(redis_client, clock):
    circuit = breaker(redis_client, clock)
    circuit.open_for(600, "credentials refused: INVALID_OAUTH")
    clock.now += 5
    circuit.record_success()
    assert circuit.state().state == OPEN
    with pytest.raises(CircuitOpen) as raised:
        circuit.before_call()
    assert raised.value.retry_after == pytest.approx(595, abs=0.01)
    # a probe that fails after the forced time opens it for the usual recovery time, and a
    # success then closes it (the forced opening is over)
    clock.now += 600
    assert circuit.before_call() is True
    assert circuit.record_failure("401") is True
    assert circuit.record_success() is True
    assert circuit.state().state == CLOSED


def test_a_circuit_opened_by_failures_is_closed_by_a_success(redis_client, clock):
    circuit = breaker(redis_client, clock)
    for _ in range(5):
        circuit.record_failure("503")
    assert circuit.record_success() is True  # Zoho answered: it is up
    assert circuit.before_call() is False


def test_reset_closes_even_a_forced_opening(redis_client, clock):
    circuit = breaker(redis_client, clock)
    circuit.open_for(600, "credentials refused")
    circuit.reset()
    assert circuit.before_call() is False


def test_without_a_clock_of_its_own_the_circuit_runs_on_the_redis_servers_clock(redis_url, redis_client, monkeypatch):
    # worker A opens the circuit for a minute; worker B's clock runs 120 s ahead: it must still
    # see the circuit open (by its own clock the minute is over)
    import time

    other = redis.Redis.from_url(redis_url)
    first = CircuitBreaker(redis_client, "zoho", failure_threshold=5, recovery_seconds=60)
    second = CircuitBreaker(other, "zoho", failure_threshold=5, recovery_seconds=60)
    first.open_for(60, "credentials refused")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 120)
    with pytest.raises(CircuitOpen) as raised:
        second.before_call()
    assert 50 < raised.value.retry_after <= 60
    assert second.state().state == OPEN
    other.close()
