"""Build the knowledge index from the articles: `python -m knowledge.build` (`make knowledge`).

    python -m knowledge.build [--config config/knowledge.yml] [--articles DIR] [--out DIR]

Reads `config/knowledge.yml` (articles, index directory, chunking, embedder), writes the index
atomically and prints what it built and how long it took. Exit status 1 with a message on
a configuration, article or pipeline problem.
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

from helpdesk.errors import ConfigError
from knowledge.chunking import ArticleError
from knowledge.embedder import make_embedder
from knowledge.index import KnowledgeIndexError, build_index
from knowledge.lemmas import AnalyzerUnavailable
from helpdesk.config import load_knowledge_config


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m knowledge.build", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, help="knowledge settings (default: config/knowledge.yml)")
    parser.add_argument("--articles", type=Path, help="articles directory (default: from the settings)")
    parser.add_argument("--out", type=Path, help="index directory (default: from the settings)")
    args = parser.parse_args(argv)
    try:
        settings = load_knowledge_config(args.config)
        report = build_index(settings, make_embedder(settings), index_dir=args.out, articles_dir=args.articles)
    except (ConfigError, ArticleError, AnalyzerUnavailable, KnowledgeIndexError) as error:
        print(f"knowledge index not built: {error}", file=sys.stderr)
        return 1
    print(
        f"knowledge index written to {report.index_dir}: {report.articles} articles, "
        f"{report.chunks} chunks, {report.terms} lemmas, {report.dimension} dimensions, "
        f"built in {report.seconds:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
