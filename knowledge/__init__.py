"""The knowledge base: articles in `articles/`, chunked by heading, indexed (FAISS dense
vectors + BM25 on lemmas) by `python -m knowledge.build`, searched by
`knowledge.retrieval.KnowledgeBase`."""
