"""The analyzer gives spaCy's own lemmas and stop words without importing spaCy (and with
it TensorFlow) into the process that answers questions."""
import json
import re
import subprocess
import sys

import pytest

from knowledge.lemmas import Analyzer, AnalyzerUnavailable, spacy_hash, spacy_stop_words
from tests.knowledge.support import PROJECT, articles_index, project_settings  # noqa: F401


@pytest.fixture(scope="module")
def spacy_pipeline():
    import spacy

    return spacy.load(project_settings().spacy_model)


@pytest.fixture(scope="module")
def text_analyzer():
    return Analyzer(project_settings().spacy_model)


def test_the_hash_is_spacys(spacy_pipeline):
    from spacy.strings import hash_string

    words = ["", "a", "caja", "cajas", "contraseña", "funcionó", "impresora", "impresoras",
             "calibración", "ñandú", "1234567", "12345678", "123456789", "lector-códigos", "€uro"]
    assert [spacy_hash(w) for w in words] == [hash_string(w) for w in words]


def test_the_stop_words_are_spacys(spacy_pipeline):
    assert spacy_stop_words("es") == frozenset(spacy_pipeline.Defaults.stop_words)


def test_every_word_of_the_articles_gets_spacys_lemma(spacy_pipeline, text_analyzer):
    words = set()
    for article in (PROJECT / "knowledge/articles").glob("*.md"):
        words.update(re.findall(r"[^\W\d_]+", article.read_text(encoding="utf-8").lower()))
    assert len(words) > 1500
    differ = {w: (text_analyzer.lemma(w), spacy_pipeline(w)[0].lemma_) for w in sorted(words)
              if text_analyzer.lemma(w) != spacy_pipeline(w)[0].lemma_}
    assert differ == {}
    stops = {w for w in words if text_analyzer.is_stop(w) != spacy_pipeline(w)[0].is_stop}
    assert stops == set()


def test_content_words_lemmatised_and_folded(text_analyzer):
    analysis = text_analyzer.analyse("¿Cómo CAMBIO las contraseñas? La impresora no funcionó, q hago con el cierre Z")

    assert analysis.terms == ["cambiar", "contrasena", "impresor", "funcionar", "cerrar", "z"]
    assert analysis.words == ["cambio", "contrasenas", "impresora", "funciono", "cierre", "z"]


def test_a_missing_pipeline_is_a_clear_error(tmp_path):
    with pytest.raises(AnalyzerUnavailable, match="make setup"):
        Analyzer(tmp_path / "es_lookup")
    broken = tmp_path / "broken"
    (broken / "lemmatizer" / "lookups").mkdir(parents=True)
    (broken / "lemmatizer" / "lookups" / "lookups.bin").write_bytes(b"\x00 not msgpack")
    with pytest.raises(AnalyzerUnavailable, match="not a spaCy lookups table"):
        Analyzer(broken)


def test_answering_does_not_import_spacy_or_tensorflow(articles_index):  # noqa: F811
    script = (
        "import json, sys\n"
        "from dataclasses import replace\n"
        "from pathlib import Path\n"
        "from knowledge.retrieval import KnowledgeBase\n"
        "from helpdesk.config import load_knowledge_config\n"
        f"settings = replace(load_knowledge_config(Path({str(PROJECT / 'config/knowledge.yml')!r})),"
        f" index_dir=Path({str(articles_index)!r}))\n"
        "found = KnowledgeBase.load(settings).search('como cambio el rollo de la fiscal')\n"
        "print(json.dumps([found[0].path, sorted(m for m in ('spacy', 'thinc', 'tensorflow') if m in sys.modules)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=PROJECT, capture_output=True, text=True,
                         timeout=120, check=True, env={"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin"})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["impresora-fiscal-cambio-de-rollo.md", []]
