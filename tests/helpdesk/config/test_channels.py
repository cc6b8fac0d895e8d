"""config/channels.yml loading: the project's file, and the errors a bad edit gives (each
names the field to fix)."""
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
import yaml

from helpdesk.config import channel_config, load_channel_config
from helpdesk.errors import ConfigError
from tests.connectors.whatsapp.support import CHANNELS_YML


def test_the_project_file_loads():
    config = load_channel_config(CHANNELS_YML)
    assert config.ask_in in ("group", "direct")
    assert config.rate_messages == 20 and config.rate_window_seconds == 60
    assert config.max_concurrent_turns >= 1 and config.send_attempts >= 1
    assert config.outbox_backoff_seconds and all(x > 0 for x in config.outbox_backoff_seconds)
    assert config.reengagement_template == {"name": "seguimiento_ticket", "language": "es"}
    assert config.media_allowed("image/jpeg") and config.media_allowed("application/pdf")
    assert not config.media_allowed("application/x-msdownload")
    assert not config.media_allowed(None)
    assert config.opt_word("BAJA") == "out" and config.opt_word("Alta") == "in"
    assert config.opt_word("Cancelar suscripción") == "out"
    assert config.opt_word("hola") is None
    # the replay window: what the dedupe window still remembers, less the margin
    assert config.replay_window_seconds == config.dedupe_ttl_seconds - 3600 > 0
    assert config.max_clock_skew_seconds == 300 and config.max_id_chars == 128


def test_texts_are_formal_spanish_on_one_line():
    config = load_channel_config(CHANNELS_YML)
    for key in ("unsupported", "media_unavailable", "media_too_large", "rate_limited",
                "voice_needs_text"):
        text = config.text(key)
        assert text and "\n" not in text and "  " not in text
    assert "¿Podría" in config.text("media_unavailable")


def test_channel_config_reads_the_configured_directory(monkeypatch, tmp_path):
    data = yaml.safe_load(CHANNELS_YML.read_text(encoding="utf-8"))
    data["rate_limit"]["messages"] = 7
    (tmp_path / "channels.yml").write_text(yaml.safe_dump(data, allow_unicode=True),
                                           encoding="utf-8")
    monkeypatch.setenv("HELPDESK_CONFIG_DIR", str(tmp_path))
    channel_config.cache_clear()
    try:
        assert channel_config().rate_messages == 7
        assert channel_config() is channel_config()  # loaded once
    finally:
        channel_config.cache_clear()


def _write(tmp_path: Path, change: Callable[[Dict[str, Any]], None]) -> Path:
    data = yaml.safe_load(CHANNELS_YML.read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "channels.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _set(section: str, key: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    def change(data: Dict[str, Any]) -> None:
        data[section][key] = value
    return change


def _drop(section: str, key: str = "") -> Callable[[Dict[str, Any]], None]:
    def change(data: Dict[str, Any]) -> None:
        if key:
            del data[section][key]
        else:
            del data[section]
    return change


@pytest.mark.parametrize("change, names", [
    (_set("groups", "ask_in", "both"), ["groups.ask_in", "'both'"]),
    (_set("groups", "ask_in", 3), ["ask_in"]),
    (_drop("groups", "ask_in"), ["groups", "ask_in"]),
    (_drop("texts", "unsupported"), ["texts.unsupported"]),
    (_set("texts", "rate_limited", "   "), ["texts.rate_limited"]),
    (_set("texts", "voice_needs_text", None), ["texts.voice_needs_text"]),
    (_set("inbound", "debounce_ms", -1), ["inbound.debounce_ms", "negative"]),
    (_set("rate_limit", "messages", -5), ["rate_limit.messages", "negative"]),
    (_set("media", "timeout_seconds", -0.5), ["media.timeout_seconds", "negative"]),
    (_set("webhook", "max_body_bytes", "mucho"), ["max_body_bytes"]),
    (_drop("rate_limit", "window_seconds"), ["rate_limit", "window_seconds"]),
    (_drop("outbound"), ["outbound"]),
    (_set("outbound", "outbox_backoff_seconds", []), ["outbound.outbox_backoff_seconds"]),
    (_set("outbound", "outbox_backoff_seconds", [1, 0]), ["outbound.outbox_backoff_seconds"]),
    (_set("outbound", "outbox_backoff_seconds", 5), ["outbox_backoff_seconds"]),
    (_set("meta", "reengagement_template", {"language": "es"}),
     ["meta.reengagement_template"]),
    (_set("optout", "out_words", "baja"), ["out_words"]),
    (_set("webhook", "replay_margin_seconds", 604800), ["webhook.replay_margin_seconds"]),
    (_drop("webhook", "max_clock_skew_seconds"), ["webhook.max_clock_skew_seconds"]),
    (_set("webhook", "max_id_chars", 0), ["webhook.max_id_chars"]),
    (_set("inbound", "partitions", 0), ["inbound.partitions", "1 to 1024"]),
    (_set("inbound", "partitions", 5000), ["inbound.partitions"]),
    (_drop("inbound", "partitions"), ["inbound.partitions", "missing"]),
    (_set("inbound", "lease_seconds", 0), ["inbound.lease_seconds"]),
    (_set("inbound", "lease_seconds", "15s"), ["inbound.lease_seconds"]),
])
def test_bad_values_name_the_field(tmp_path, change, names):
    with pytest.raises(ConfigError) as error:
        load_channel_config(_write(tmp_path, change))
    message = str(error.value)
    assert "channels.yml" in message
    for name in names:
        assert name in message, message


def test_optional_parts_may_be_left_out(tmp_path):
    def change(data: Dict[str, Any]) -> None:
        del data["meta"]
        del data["outbound"]["read_receipts"]
        del data["outbound"]["typing"]
    config = load_channel_config(_write(tmp_path, change))
    assert config.reengagement_template is None
    assert config.read_receipts is False and config.typing is False


def test_zero_concurrency_and_window_are_raised_to_one(tmp_path):
    def change(data: Dict[str, Any]) -> None:
        data["inbound"]["max_concurrent_turns"] = 0
        data["rate_limit"]["window_seconds"] = 0
        data["outbound"]["attempts"] = 0
    config = load_channel_config(_write(tmp_path, change))
    assert config.max_concurrent_turns == 1 and config.rate_window_seconds == 1
    assert config.send_attempts == 1


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_channel_config(tmp_path / "channels.yml")
    (tmp_path / "channels.yml").write_text("webhook: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="YAML"):
        load_channel_config(tmp_path / "channels.yml")


def test_a_boolean_is_not_a_number(tmp_path):
    with pytest.raises(ConfigError, match="max_concurrent_turns"):
        load_channel_config(_write(tmp_path, _set("inbound", "max_concurrent_turns", True)))
