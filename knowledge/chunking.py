"""Articles cut into passages that each answer one thing.

An article is a `# Title`, an introduction, and `##`/`###` sections written to stand on their
own, so a chunk is one section (the introduction is a chunk with an empty heading). A
section longer than the configured size is split between paragraphs; a single paragraph
longer than that is split between lines, and a single line between sentences, so no chunk
is larger than the limit unless one sentence is.
"""
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


class ArticleError(ValueError):
    """An article does not have the shape chunking needs (a `# ` title first)."""


@dataclass(frozen=True)
class Chunk:
    path: str  # the article's file name relative to the articles directory
    title: str  # the article's `# ` heading
    heading: str  # the `##`/`###` heading of the section; empty for the introduction
    text: str  # the section's body (markdown as written, without the heading line)

    def indexed_text(self) -> str:
        """What both retrieval methods read: the title and heading give the context."""
        return "\n".join(part for part in (self.title, self.heading, self.text) if part)


def _split_long(text: str, max_chars: int) -> List[str]:
    """Paragraphs, else lines, else sentences, packed greedily up to `max_chars`."""
    if len(text) <= max_chars:
        return [text]
    for separator, pattern in (("\n\n", re.compile(r"\n\s*\n")), ("\n", re.compile(r"\n")),
                               (" ", _SENTENCE_END)):
        pieces = [p.strip() for p in pattern.split(text) if p.strip()]
        if len(pieces) > 1:
            break
    else:
        return [text]
    parts: List[str] = []
    current = ""
    for piece in pieces:
        for small in _split_long(piece, max_chars):
            candidate = f"{current}{separator}{small}" if current else small
            if current and len(candidate) > max_chars:
                parts.append(current)
                current = small
            else:
                current = candidate
    if current:
        parts.append(current)
    return parts


def _sections(markdown: str, where: str) -> Tuple[str, List[Tuple[str, str]]]:
    title: Optional[str] = None
    sections: List[Tuple[str, List[str]]] = []
    heading, lines = "", []
    for line in markdown.splitlines():
        match = _HEADING.match(line)
        if match and len(match.group(1)) == 1 and title is None:
            title = match.group(2)
            continue
        if match and len(match.group(1)) in (2, 3):
            sections.append((heading, lines))
            heading, lines = match.group(2), []
            continue
        if title is None and line.strip():
            raise ArticleError(f"{where}: text before the '# ' title")
        lines.append(line)
    sections.append((heading, lines))
    if not title:
        raise ArticleError(f"{where}: no '# ' title")
    return title, [(h, "\n".join(body).strip()) for h, body in sections]


def chunk_article(path: str, markdown: str, max_chars: int) -> List[Chunk]:
    """The chunks of one article, in reading order; sections without text are left out."""
    title, sections = _sections(markdown, path)
    chunks = []
    for heading, body in sections:
        if not body:
            continue
        for part in _split_long(body, max_chars):
            chunks.append(Chunk(path=path, title=title, heading=heading, text=part))
    return chunks


def article_files(articles_dir: Path) -> List[Path]:
    """Markdown files of the knowledge base in a stable order (the index is repeatable)."""
    return sorted(p for p in Path(articles_dir).rglob("*.md") if p.is_file())


def chunk_articles(articles_dir: Path, max_chars: int) -> List[Chunk]:
    files = article_files(articles_dir)
    if not files:
        raise ArticleError(f"{articles_dir}: no .md articles found")
    chunks: List[Chunk] = []
    for file in files:
        relative = file.relative_to(articles_dir).as_posix()
        chunks.extend(chunk_article(relative, file.read_text(encoding="utf-8"), max_chars))
    return chunks


def chunk_texts(chunks: Iterable[Chunk]) -> List[str]:
    return [chunk.indexed_text() for chunk in chunks]
