"""Build the Spanish spaCy pipeline Rasa loads: blank ``es`` plus the lookup lemmatizer.

No pretrained Spanish pipeline exists for spaCy 3.4 on the package index, and nothing may be
downloaded at run time, so the pipeline is assembled from ``spacy-lookups-data`` and saved to
a directory that ``config.yml`` names as the SpacyNLP model. Re-running it is harmless.
"""
import sys
from pathlib import Path

import spacy


def build(target: Path) -> None:
    nlp = spacy.blank("es")
    nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
    nlp.initialize()
    target.parent.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(target)


def main() -> int:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "var/spacy/es_lookup")
    build(target)
    check = spacy.load(target)
    lemmas = [t.lemma_ for t in check("las cajas no funcionan")]
    print(f"spaCy pipeline written to {target} (lemmas: {' '.join(lemmas)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
