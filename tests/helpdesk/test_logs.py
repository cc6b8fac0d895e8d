"""Structured logs (helpdesk/logs.py): masking, secrets, correlation ids, JSON lines."""
import io
import json
import logging
import re
import uuid
from typing import Iterator, List, Tuple

import pytest

from helpdesk.logs import (
    CorrelationFilter,
    JsonFormatter,
    correlation,
    correlation_id_var,
    mask_phone,
    mask_text,
)

PHONE = "5491122334455"
MASKED = "549****55"


# masking -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, masked",
    [
        ("5491122334455", "549****55"),
        ("+5491122334455", "549****55"),
        ("+54 9 11 2233 4455", "549****55"),
        ("5491122334455@s.whatsapp.net", "549****55"),
        ("123456", "123****56"),
        ("12345", "****"),
        ("", "****"),
    ],
)
def test_mask_phone(value, masked):
    assert mask_phone(value) == masked


@pytest.mark.parametrize(
    "text, masked",
    [
        ("llamame al 5491122334455 por favor", f"llamame al {MASKED} por favor"),
        ("de +5491122334455:", f"de {MASKED}:"),
        ("jid 5491122334455@s.whatsapp.net", f"jid {MASKED}@s.whatsapp.net"),
        ("5491122334455 y 5491199887766", f"{MASKED} y 549****66"),
        ("nro 12345678", "nro 123****78"),
    ],
)
def test_mask_text_masks_phone_numbers(text, masked):
    assert mask_text(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "tienda 42",
        "la caja 2 de la tienda 42 no abre",
        "error E-45, ticket #1042",
        "suc. 8, 3 cajas",
        "abre a las 10:30 del 12/03/2024",
        "HD-24GDXR",
        "",
    ],
)
def test_mask_text_leaves_short_numbers(text):
    assert mask_text(text) == text


# a logger that writes through the project's formatter and filter ---------------------
@pytest.fixture
def json_logger() -> Iterator[Tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CorrelationFilter())
    logger = logging.getLogger(f"helpdesk.test.{uuid.uuid4().hex}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> List[dict]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_one_json_object_per_line(json_logger):
    logger, stream = json_logger
    logger.info("ticket recorded")
    logger.warning("second line\nwith a newline inside")
    first, second = lines(stream)
    assert first["level"] == "INFO"
    assert first["logger"] == logger.name
    assert first["msg"] == "ticket recorded"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert "correlation_id" not in first  # none in context
    assert second["level"] == "WARNING"
    assert second["msg"] == "second line\nwith a newline inside"
    assert len(stream.getvalue().splitlines()) == 2


def test_message_arguments_are_merged_and_masked(json_logger):
    logger, stream = json_logger
    logger.info("message from %s in store %d", PHONE, 42)
    (entry,) = lines(stream)
    assert entry["msg"] == f"message from {MASKED} in store 42"
    assert PHONE not in stream.getvalue()


def test_correlation_id_from_context(json_logger):
    logger, stream = json_logger
    with correlation("corr-123") as value:
        assert value == "corr-123"
        logger.info("inside")
    logger.info("outside")
    inside, outside = lines(stream)
    assert inside["correlation_id"] == "corr-123"
    assert "correlation_id" not in outside


def test_explicit_correlation_id_extra_wins(json_logger):
    logger, stream = json_logger
    with correlation("from-context"):
        logger.info("job", extra={"correlation_id": "from-job-meta"})
    (entry,) = lines(stream)
    assert entry["correlation_id"] == "from-job-meta"


def test_extras_are_included_and_masked(json_logger):
    logger, stream = json_logger
    logger.info(
        "message received",
        extra={
            "conversation_id": f"{PHONE}@s.whatsapp.net",
            "chars": 120,
            "cut": False,
            "store_input": "tienda 42",
            "nothing": None,
            "senders": [PHONE, "tienda 42"],
            "meta": {"from": PHONE, "count": 2},
        },
    )
    (entry,) = lines(stream)
    assert entry["conversation_id"] == f"{MASKED}@s.whatsapp.net"
    assert entry["chars"] == 120
    assert entry["cut"] is False
    assert entry["store_input"] == "tienda 42"
    assert entry["nothing"] is None
    assert entry["senders"] == [MASKED, "tienda 42"]
    assert entry["meta"] == {"from": MASKED, "count": 2}
    assert PHONE not in stream.getvalue()


def test_non_json_extras_are_turned_into_masked_text(json_logger):
    class Sender:
        def __str__(self):
            return f"Sender({PHONE})"

    logger, stream = json_logger
    logger.info("x", extra={"sender": Sender()})
    (entry,) = lines(stream)
    assert entry["sender"] == f"Sender({MASKED})"


@pytest.mark.parametrize(
    "key",
    ["api_token", "token", "zoho_client_secret", "password", "REDIS_PASSWORD", "api_key",
     "x-api-key", "Authorization"],
)
def test_secrets_are_hidden(json_logger, key):
    logger, stream = json_logger
    logger.info("calling zoho", extra={key: "s3cr3t-value-123456789"})
    (entry,) = lines(stream)
    assert entry[key] == "[hidden]"
    assert "s3cr3t" not in stream.getvalue()
    assert "123456789" not in stream.getvalue()


def test_nested_secrets_are_hidden(json_logger):
    logger, stream = json_logger
    logger.info(
        "request",
        extra={"request": {"headers": {"Authorization": "Zoho-oauthtoken abc"}, "url": "/tickets"},
               "calls": [{"api_token": "xyz"}]},
    )
    (entry,) = lines(stream)
    assert entry["request"] == {"headers": {"Authorization": "[hidden]"}, "url": "/tickets"}
    assert entry["calls"] == [{"api_token": "[hidden]"}]
    assert "abc" not in stream.getvalue() and "xyz" not in stream.getvalue()


def test_our_own_ids_are_not_masked(json_logger):
    logger, stream = json_logger
    ticket_id = "12345678-1234-5678-1234-567812345678"  # long runs of digits, yet not a phone
    logger.info(
        "ticket recorded",
        extra={"ticket_id": ticket_id, "reference": "HD-24GDXR", "job_id": "99887766554433",
               "other_id": "99887766554433"},
    )
    (entry,) = lines(stream)
    assert entry["ticket_id"] == ticket_id
    assert entry["reference"] == "HD-24GDXR"
    assert entry["job_id"] == "99887766554433"
    assert entry["other_id"] == "998****33"  # the same value under another key is masked


def test_exceptions_are_included_and_masked(json_logger):
    logger, stream = json_logger
    try:
        raise ValueError(f"bad sender {PHONE}")
    except ValueError:
        logger.exception("ledger write failed", extra={"ticket_id": "t-1"})
    output = stream.getvalue()
    (entry,) = lines(stream)  # the traceback stays inside the one JSON line
    assert entry["level"] == "ERROR"
    assert entry["msg"] == "ledger write failed"
    assert entry["ticket_id"] == "t-1"
    assert "Traceback" in entry["exc"]
    assert f"ValueError: bad sender {MASKED}" in entry["exc"]
    assert PHONE not in output
    for key in ("exc_info", "exc_text", "args", "msecs", "levelno", "pathname"):
        assert key not in entry


def test_formatter_without_the_filter_reads_the_context():
    formatter = JsonFormatter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hi %s", (PHONE,), None)
    with correlation("ctx-1"):
        entry = json.loads(formatter.format(record))
    assert entry["correlation_id"] == "ctx-1"
    assert entry["msg"] == f"hi {MASKED}"
    assert entry["logger"] == "x"


# the filter and the context ----------------------------------------------------------
def _record(**extra) -> logging.LogRecord:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "msg", None, None)
    record.__dict__.update(extra)
    return record


def test_correlation_filter_adds_the_context_id():
    record = _record()
    with correlation("abc"):
        assert CorrelationFilter().filter(record) is True
    assert record.correlation_id == "abc"  # kept after the context ends


def test_correlation_filter_keeps_an_explicit_id():
    record = _record(correlation_id="explicit")
    with correlation("abc"):
        assert CorrelationFilter().filter(record) is True
    assert record.correlation_id == "explicit"


def test_correlation_filter_outside_any_context():
    record = _record()
    assert CorrelationFilter().filter(record) is True
    assert record.correlation_id is None


def test_correlation_restores_the_previous_value():
    assert correlation_id_var.get() is None
    with correlation("outer"):
        assert correlation_id_var.get() == "outer"
        with correlation("inner"):
            assert correlation_id_var.get() == "inner"
        assert correlation_id_var.get() == "outer"
    assert correlation_id_var.get() is None


def test_correlation_restores_after_an_exception():
    with pytest.raises(RuntimeError):
        with correlation("boom"):
            raise RuntimeError("x")
    assert correlation_id_var.get() is None


@pytest.mark.parametrize("given", [None, ""])
def test_correlation_makes_a_new_id_when_none_is_given(given):
    with correlation(given) as first:
        assert re.fullmatch(r"[0-9a-f]{32}", first)
        assert correlation_id_var.get() == first
    with correlation(given) as second:
        assert second != first
