"""Articles cut by heading: what each chunk holds, long sections split on paragraphs."""
import re

import pytest

from knowledge.chunking import ArticleError, chunk_article, chunk_articles
from tests.knowledge.support import PROJECT, project_settings

ARTICLE = """# Cómo cambiar el rollo de la balanza

Este artículo explica el cambio de rollo.

## Cómo saber que se termina

Aparece una franja rosa en el borde.

## Cómo cambiarlo

1. Abra la tapa.
2. Coloque el rollo nuevo.

### Si no imprime

Cierre la tapa con firmeza.

## Cuándo pedir ayuda
"""


def test_one_chunk_per_section_with_title_and_heading():
    chunks = chunk_article("balanza/rollo.md", ARTICLE, max_chars=1200)

    assert [(c.title, c.heading) for c in chunks] == [
        ("Cómo cambiar el rollo de la balanza", ""),
        ("Cómo cambiar el rollo de la balanza", "Cómo saber que se termina"),
        ("Cómo cambiar el rollo de la balanza", "Cómo cambiarlo"),
        ("Cómo cambiar el rollo de la balanza", "Si no imprime"),
    ]  # the empty "Cuándo pedir ayuda" section gives no chunk
    assert {c.path for c in chunks} == {"balanza/rollo.md"}
    assert chunks[0].text == "Este artículo explica el cambio de rollo."
    assert chunks[2].text == "1. Abra la tapa.\n2. Coloque el rollo nuevo."
    assert chunks[2].indexed_text() == (
        "Cómo cambiar el rollo de la balanza\nCómo cambiarlo\n1. Abra la tapa.\n2. Coloque el rollo nuevo."
    )
    assert chunks[0].indexed_text() == "Cómo cambiar el rollo de la balanza\nEste artículo explica el cambio de rollo."


def test_a_long_section_is_split_between_paragraphs_and_keeps_every_word():
    paragraphs = [f"Párrafo {n}. " + "El encargado revisa la caja y firma la planilla. " * 6 for n in range(8)]
    article = "# Título\n\n## Sección larga\n\n" + "\n\n".join(p.strip() for p in paragraphs)

    chunks = chunk_article("a.md", article, max_chars=700)

    assert len(chunks) > 1
    assert all(len(c.text) <= 700 for c in chunks)
    assert all(c.heading == "Sección larga" for c in chunks)
    # split only between paragraphs: each chunk starts with one
    assert all(c.text.startswith("Párrafo ") for c in chunks)
    assert " ".join(" ".join(c.text.split()) for c in chunks) == " ".join(" ".join(p.split()) for p in paragraphs)


def test_a_single_long_paragraph_is_split_between_sentences():
    paragraph = " ".join(f"Esta es la oración número {n} del procedimiento de cierre." for n in range(40))
    chunks = chunk_article("a.md", f"# Título\n\n## Una\n\n{paragraph}", max_chars=300)

    assert len(chunks) > 1
    assert all(len(c.text) <= 300 for c in chunks)
    assert all(c.text.endswith("cierre.") for c in chunks)
    assert " ".join(c.text for c in chunks) == paragraph


@pytest.mark.parametrize("markdown", ["Sin título\n\n## Sección\n\ntexto", "## Sección\n\ntexto", ""])
def test_an_article_needs_a_title_first(markdown):
    with pytest.raises(ArticleError, match="a.md"):
        chunk_article("a.md", markdown, max_chars=1200)


def test_an_empty_articles_directory_is_an_error(tmp_path):
    with pytest.raises(ArticleError, match="no .md articles"):
        chunk_articles(tmp_path, 1200)


def test_the_project_articles():
    settings = project_settings()
    chunks = chunk_articles(settings.articles_dir, settings.chunking.max_chars)
    files = sorted(p.name for p in (PROJECT / "knowledge/articles").glob("*.md"))

    assert sorted({c.path for c in chunks}) == files
    for chunk in chunks:
        first_line = (PROJECT / "knowledge/articles" / chunk.path).read_text(encoding="utf-8").splitlines()[0]
        assert first_line == f"# {chunk.title}"
        assert chunk.text and not chunk.text.startswith("#")
        assert len(chunk.text) <= settings.chunking.max_chars or not re.search(r"\n", chunk.text)
    # every section heading of every article is a chunk's heading
    headings = {(c.path, c.heading) for c in chunks}
    for name in files:
        for line in (PROJECT / "knowledge/articles" / name).read_text(encoding="utf-8").splitlines():
            if line.startswith("## "):
                assert (name, line[3:].strip()) in headings
