"""Compare the NLU pipelines by 5-fold cross-validation (`make bench-nlu`).

(a) whitespace tokens + word and char n-gram counts + DIET
(b) SpacyNLP (blank es + lookup lemmas) + spaCy tokens and lemmas + char n-grams + DIET
Both add the regex/lookup extractor for stores and ticket numbers. Prints intent macro-F1,
entity F1 and how much chatter is taken for an incident, and writes bench/nlu/results.json.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
CONFIGS = {
    "a_whitespace": PROJECT / "bench/nlu/config_whitespace.yml",
    "b_spacy": PROJECT / "bench/nlu/config_spacy.yml",
}
FOLDS = 5


def run(name: str, config: Path) -> dict:
    out = PROJECT / "var/bench-nlu" / name
    started = time.time()
    subprocess.run(
        [
            str(PROJECT / ".venv/bin/rasa"), "test", "nlu",
            "--nlu", "data/nlu", "--config", str(config),
            "--cross-validation", "--folds", str(FOLDS), "--out", str(out),
        ],
        cwd=PROJECT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    intents = json.loads((out / "intent_report.json").read_text())
    entities_file = next(
        (p for p in (out / "DIETClassifier_report.json", out / "CRFEntityExtractor_report.json") if p.exists()),
        None,
    )
    entity_f1 = None
    per_entity = {}
    if entities_file:
        entities = json.loads(entities_file.read_text())
        entity_f1 = entities.get("micro avg", entities.get("weighted avg", {})).get("f1-score")
        per_entity = {
            k: round(v["f1-score"], 3)
            for k, v in entities.items()
            if isinstance(v, dict) and "f1-score" in v and k not in ("micro avg", "macro avg", "weighted avg", "no_entity")
        }
    chatter = intents.get("chatter", {})
    confused = chatter.get("confused_with", {}).get("report_incident", 0)
    support = chatter.get("support", 0)
    return {
        "intent_macro_f1": round(intents["macro avg"]["f1-score"], 4),
        "intent_accuracy": round(intents.get("accuracy", 0), 4),
        "entity_micro_f1": round(entity_f1, 4) if entity_f1 is not None else None,
        "entity_f1": per_entity,
        "chatter_as_incident": f"{confused}/{support}",
        "chatter_as_incident_pct": round(100 * confused / support, 2) if support else None,
        "seconds": round(time.time() - started),
    }


def main() -> int:
    names = sys.argv[1:] or list(CONFIGS)
    results = {name: run(name, CONFIGS[name]) for name in names}
    print(json.dumps(results, indent=2, ensure_ascii=False))
    (PROJECT / "bench/nlu/results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
