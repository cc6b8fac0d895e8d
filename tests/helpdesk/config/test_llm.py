"""config/llm.yml (helpdesk/config/llm.py): the spec's numbers, defaults for an empty file, a
broken file named with its field, and the keys the dialogue's LLM steps read apart."""
from pathlib import Path

import pytest

from helpdesk.config import load_dialogue_llm_config, load_llm_config
from helpdesk.errors import ConfigError

PROJECT = Path(__file__).resolve().parents[3]


def test_the_llm_config_has_the_spec_numbers():
    config = load_llm_config(PROJECT / "config" / "llm.yml")
    assert config.budgets.conversation_tokens == 4000
    assert config.budgets.max_context_tokens == 8000
    assert config.budgets.monthly_usd == 500
    assert config.budgets.ticket_cost_alert_usd == pytest.approx(0.10)
    assert config.retries >= 1 and config.structured_output == "json_object"
    for use in config.uses.values():
        assert 0 < use.timeout_seconds <= use.deadline_seconds
    assert config.prices["gpt-4o-mini"].input == pytest.approx(0.15)
    assert 0 < config.nlu_fallback.min_confidence < 1


@pytest.mark.parametrize("content, message", [
    ("request: {retries: -1}\n", "'retries' must be at least 0"),
    ("request: {structured_output: xml}\n", "must be one of json_schema"),
    ("uses: {intent: {timeout_seconds: 5, deadline_seconds: 2}}\n",
     "'deadline_seconds' must not be below"),
    ("uses: {poetry: {timeout_seconds: 5}}\n", "uses.poetry is not a use"),
    ("budgets: {monthly_usd: lots}\n", "'monthly_usd' must be a number"),
    ("prices: {gpt-4o-mini: {input: 0.15, outptu: 0.6}}\n", "unknown field 'outptu'"),
    ("screenshot: {detail: ultra}\n", "'detail' must be low, high or auto"),
    ("default_base_url: api.openai.com\n", "'default_base_url' must be an http"),
])
def test_broken_llm_config_is_named(tmp_path, content, message):
    path = tmp_path / "llm.yml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as error:
        load_llm_config(path)
    assert str(path) in str(error.value)


def test_an_empty_llm_config_takes_the_defaults(tmp_path):
    path = tmp_path / "llm.yml"
    path.write_text("{}\n", encoding="utf-8")
    config = load_llm_config(path)
    assert config.budgets.conversation_tokens == 4000 and config.budgets.monthly_usd == 500
    assert config.price_for("anything").input == 0  # no price table: nothing is priced


def test_the_dialogue_steps_keys():
    config = load_dialogue_llm_config(PROJECT / "config" / "llm.yml")
    assert config.max_images_per_message >= 0
    assert all(isinstance(intent, str) and intent for intent in config.never_chosen)


@pytest.mark.parametrize("content, message", [
    ("screenshot: {max_images_per_message: -1}\n",
     "screenshot.max_images_per_message must be a whole number (0 or more), got -1"),
    ("screenshot: {max_images_per_message: 1.5}\n",
     "screenshot.max_images_per_message must be a whole number (0 or more), got 1.5"),
    ("nlu_fallback: {never_chosen: greet}\n",
     "nlu_fallback.never_chosen must be a list of intent names"),
    ("screenshot: [1]\n", "'nlu_fallback' and 'screenshot' must be mappings"),
])
def test_broken_dialogue_steps_keys_are_named(tmp_path, content, message):
    path = tmp_path / "llm.yml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_dialogue_llm_config(path)
    assert str(error.value) == f"{path}: {message}"


def test_the_dialogue_steps_defaults(tmp_path):
    path = tmp_path / "llm.yml"
    path.write_text("{}\n", encoding="utf-8")
    config = load_dialogue_llm_config(path)
    assert (config.never_chosen, config.max_images_per_message) == ((), 3)
