"""config/knowledge.yml is checked on load: a wrong value names the file and the field."""
import pytest
import yaml

from helpdesk.errors import ConfigError
from helpdesk.config import load_knowledge_config
from tests.knowledge.support import PROJECT


def write(tmp_path, change):
    data = yaml.safe_load((PROJECT / "config/knowledge.yml").read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "knowledge.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_the_project_settings_load():
    settings = load_knowledge_config(PROJECT / "config/knowledge.yml")
    assert settings.index_dir == PROJECT / "build/knowledge"
    assert settings.articles_dir == PROJECT / "knowledge/articles"
    assert settings.retrieval.fusion in ("blend", "rrf")
    assert 0 < settings.retrieval.min_score < 1


def test_the_config_directory_setting_is_followed(tmp_path, monkeypatch):
    write(tmp_path, lambda d: d.update(index_dir=str(tmp_path / "elsewhere")))
    monkeypatch.setenv("HELPDESK_CONFIG_DIR", str(tmp_path))
    assert load_knowledge_config().index_dir == tmp_path / "elsewhere"


@pytest.mark.parametrize("change, message", [
    (lambda d: d["retrieval"].update(fusion="max"), "'fusion' must be one of"),
    (lambda d: d["retrieval"].update(min_score=1.5), "'min_score' must be between"),
    (lambda d: d["retrieval"].update(lexical_weight=0, dense_weight=0), "cannot both be 0"),
    (lambda d: d["embedder"].update(dimension="mil"), "'dimension' must be int"),
    (lambda d: d["embedder"].update(char_ngram_min=6), "'char_ngram_min' is larger"),
    (lambda d: d.pop("lexical"), "'lexical' must be a mapping"),
    (lambda d: d["chunking"].pop("max_chars"), "missing 'max_chars'"),
    (lambda d: d["answer"].update(source_format="{titulo}"), "must contain {title}"),
    (lambda d: d.update(index_dir=""), "'index_dir' must be a non-empty string"),
])
def test_a_wrong_value_is_a_config_error(tmp_path, change, message):
    path = write(tmp_path, change)
    with pytest.raises(ConfigError, match="knowledge.yml") as raised:
        load_knowledge_config(path)
    assert message in str(raised.value)


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_knowledge_config(tmp_path / "knowledge.yml")
