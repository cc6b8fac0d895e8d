"""The index build: repeatable, written atomically, refused when it does not match the
embedder, and clear errors when it is missing or damaged."""
import json
from dataclasses import replace

import pytest

from knowledge import build as build_cli
from knowledge.embedder import make_embedder
from knowledge.index import (
    IndexCorruptError,
    IndexMismatchError,
    IndexMissingError,
    build_index,
    read_index,
)
from knowledge.retrieval import KnowledgeBase
from tests.knowledge.support import PROJECT, articles_index, project_settings  # noqa: F401


def files_of(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_the_same_articles_give_the_same_bytes(tmp_path, articles_index):  # noqa: F811
    settings = project_settings()
    report = build_index(settings, make_embedder(settings), index_dir=tmp_path / "again")

    assert files_of(tmp_path / "again") == files_of(articles_index)
    assert report.articles == len(list((PROJECT / "knowledge/articles").glob("*.md")))
    assert report.chunks > report.articles
    assert report.dimension == 1024 and report.seconds > 0


def test_meta_records_what_built_the_index(articles_index):  # noqa: F811
    meta = json.loads((articles_index / "meta.json").read_text(encoding="utf-8"))
    settings = project_settings()

    assert meta["embedder"] == make_embedder(settings).identity
    assert meta["dimension"] == 1024
    assert meta["parameters"] == settings.index_parameters()
    assert set(meta["files"]) == {p.name for p in articles_index.iterdir()} - {"meta.json"}
    assert len(meta["source"]["articles_sha256"]) == 64


def test_a_rebuild_replaces_the_index_and_leaves_nothing_behind(tmp_path):
    settings = project_settings()
    articles = tmp_path / "articles"
    articles.mkdir()
    (articles / "uno.md").write_text("# Primero\n\n## Caja\n\nLa caja enciende con el botón verde.\n", encoding="utf-8")
    target = tmp_path / "build" / "knowledge"
    build_index(settings, make_embedder(settings), index_dir=target, articles_dir=articles)
    assert [c.title for c in read_index(target).chunks] == ["Primero"]

    (articles / "dos.md").write_text("# Segundo\n\n## Balanza\n\nLa balanza se tara vacía.\n", encoding="utf-8")
    build_index(settings, make_embedder(settings), index_dir=target, articles_dir=articles)

    assert sorted(c.title for c in read_index(target).chunks) == ["Primero", "Segundo"]
    assert sorted(p.name for p in (tmp_path / "build").iterdir()) == ["knowledge"]


def test_a_missing_index_says_how_to_build_it(tmp_path):
    with pytest.raises(IndexMissingError, match="make knowledge"):
        KnowledgeBase.load(project_settings(index_dir=tmp_path / "nothing-here"))


def test_an_index_of_another_embedder_is_refused(articles_index):  # noqa: F811
    settings = project_settings(index_dir=articles_index)
    other = replace(settings, embedder=replace(settings.embedder, dimension=512))
    reweighted = replace(settings, embedder=replace(settings.embedder, lemma_weight=2.0))

    for wrong in (other, reweighted):
        with pytest.raises(IndexMismatchError, match="rebuild it with `make knowledge`"):
            KnowledgeBase.load(wrong)
    assert len(KnowledgeBase.load(settings)) > 0


def test_an_index_of_another_analyzer_is_refused(tmp_path, articles_index):  # noqa: F811
    copy = tmp_path / "index"
    copy.mkdir()
    for name, data in files_of(articles_index).items():
        (copy / name).write_bytes(data)
    meta = json.loads((copy / "meta.json").read_text(encoding="utf-8"))
    meta["analyzer"] = {**meta["analyzer"], "lemma_table_sha256": "0" * 64}
    (copy / "meta.json").write_text(json.dumps(meta), encoding="utf-8")

    with pytest.raises(IndexMismatchError, match="analyzer"):
        KnowledgeBase.load(project_settings(index_dir=copy))


@pytest.mark.parametrize("damage", ["truncate", "missing", "meta"])
def test_a_damaged_index_is_refused(tmp_path, articles_index, damage):  # noqa: F811
    copy = tmp_path / "index"
    copy.mkdir()
    for name, data in files_of(articles_index).items():
        (copy / name).write_bytes(data)
    if damage == "truncate":
        (copy / "dense.faiss").write_bytes((copy / "dense.faiss").read_bytes()[:1000])
    elif damage == "missing":
        (copy / "chunks.json").unlink()
    else:
        (copy / "meta.json").write_text("{not json", encoding="utf-8")

    with pytest.raises(IndexCorruptError, match="rebuild with `make knowledge`"):
        read_index(copy)


def test_the_build_command(tmp_path, capsys):
    assert build_cli.main(["--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert f"knowledge index written to {tmp_path / 'cli'}: 33 articles" in out
    assert "built in" in out
    assert (tmp_path / "cli" / "meta.json").is_file()


def test_the_build_command_reports_a_bad_configuration(tmp_path, capsys):
    config = tmp_path / "knowledge.yml"
    config.write_text("articles_dir: knowledge/articles\n", encoding="utf-8")
    assert build_cli.main(["--config", str(config), "--out", str(tmp_path / "cli")]) == 1
    assert "knowledge index not built:" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()
