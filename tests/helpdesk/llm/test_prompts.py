"""prompts/*.yml and config/llm.yml: what designers edit loads, carries the master rules,
and a broken file is named with its field."""
from pathlib import Path

import pytest

from helpdesk.errors import ConfigError
from helpdesk.config import load_llm_config
from helpdesk.llm import PLACEHOLDERS, check_prompts
from helpdesk.llm.uses import FILLERS
from helpdesk.llm import load_prompts, require

PROJECT = Path(__file__).resolve().parents[3]


def test_every_use_has_a_versioned_prompt_with_the_master_rules():
    prompts = load_prompts(PROJECT / "prompts")
    check_prompts(prompts)
    assert set(PLACEHOLDERS) <= set(prompts)
    for name in ("knowledge_answer", "screenshot", "intent", "subject"):
        prompt = prompts[name]
        assert prompt.version >= 1 and prompt.master_version >= 1
        assert prompt.tag == f"{name}@{prompt.version}+master@{prompt.master_version}"
        system = prompt.parts["system"]
        # the spec's master rules, in formal Spanish
        assert "Nunca invente datos" in system
        assert "una sola cosa por vez" in system
        assert "no crea tickets" in system
        assert "usted" in system and "{schema}" in system
    assert prompts["transcription"].render("prompt", {})


def test_rendering_fills_placeholders_and_leaves_other_braces(tmp_path):
    (tmp_path / "demo.yml").write_text(
        'version: 2\nsystem: \'Responda {"ok": true} para {text}\'\nuser: "{text}"\n',
        encoding="utf-8")
    prompt = load_prompts(tmp_path)["demo"]
    assert prompt.tag == "demo@2"
    assert prompt.render("system", {"text": "la caja"}) == 'Responda {"ok": true} para la caja'
    with pytest.raises(KeyError):
        prompt.render("user", {})


@pytest.mark.parametrize("content, message", [
    ("system: a\nuser: b\n", "'version' must be a whole number"),
    ("version: 1\nsystem: a\n", "needs both 'system' and 'user'"),
    ("version: 1\nsystem: a\nuser: b\nmaster: true\n", "master.yml is missing"),
    ("version: 1\nsystem: a\nuser: b\ntemperature: 1\n", "unknown field 'temperature'"),
    ("version: 1\n", "needs 'system' and 'user', or 'prompt'"),
    ("version: 1\nsystem: [a]\nuser: b\n", "'system' must be non-empty text"),
    ("version: 1\nsystem: a\nuser: b\nfillers: [a]\n", "'fillers' must map names to texts"),
    ("version: 1\nsystem: a\nuser: b\nfillers: {no_system: ''}\n",
     "fillers: 'no_system' must be non-empty text"),
])
def test_broken_prompt_files_are_named(tmp_path, content, message):
    (tmp_path / "subject.yml").write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as error:
        load_prompts(tmp_path)
    assert "subject.yml" in str(error.value)


def test_a_placeholder_the_code_does_not_fill_is_refused(tmp_path):
    (tmp_path / "subject.yml").write_text(
        "version: 1\nsystem: 'Tienda {store}'\nuser: '{description}'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"uses \{store\}, which is not filled"):
        require(load_prompts(tmp_path), "subject", {"system": PLACEHOLDERS["subject"],
                                                    "user": PLACEHOLDERS["subject"]})


def test_the_texts_written_where_there_is_nothing_to_say_are_in_the_prompts():
    prompts = load_prompts(PROJECT / "prompts")
    assert {name: set(prompts[name].fillers) for name in FILLERS} == FILLERS
    assert prompts["screenshot"].fillers == {"no_systems": "(no hay una lista)"}
    assert prompts["intent"].fillers == {"no_examples": "(sin ejemplos)",
                                         "no_entities": "(ninguno)"}
    assert prompts["subject"].fillers == {"no_system": "(no indicado)"}


@pytest.mark.parametrize("fillers, message", [
    ("", r"prompts/subject.yml: missing fillers.no_system"),
    ("fillers: {no_system: '(?)', no_store: '(?)'}\n",
     r"prompts/subject.yml: fillers.no_store is not used \(used: no_system\)"),
])
def test_a_filler_missing_or_unused_is_refused_at_load(tmp_path, fillers, message):
    for path in (PROJECT / "prompts").glob("*.yml"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    subject = (tmp_path / "subject.yml").read_text(encoding="utf-8")
    without = "\n".join(line for line in subject.splitlines()
                        if not line.startswith(("fillers:", "  no_system:")))
    (tmp_path / "subject.yml").write_text(f"{without}\n{fillers}", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        check_prompts(load_prompts(tmp_path))


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
