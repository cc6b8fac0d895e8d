"""prompts/*.yml: what designers edit loads, carries the master rules and the fillers the
code writes, and a broken file is named with its field. (config/llm.yml:
tests/helpdesk/config/test_llm.py.)"""
from pathlib import Path

import pytest

from helpdesk.errors import ConfigError
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
