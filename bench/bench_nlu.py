"""Compare the NLU pipelines by 5-fold cross-validation (`make bench-nlu`).

(a) whitespace tokens + word and char n-gram counts + DIET
(b) SpacyNLP (blank es + lookup lemmas) + spaCy tokens and lemmas + char n-grams + DIET
(c) as (b), intents by logistic regression on the same sparse features, DIET for entities
(d) as (a), intents by logistic regression, DIET for entities
All add the regex/lookup extractor for stores and ticket numbers. Prints intent macro-F1,
entity F1 and how much chatter is taken for an incident, and writes bench/nlu/results.json.

    bench_nlu.py [NAME ...]      cross-validate the named pipelines (default: all)
    bench_nlu.py --summarize     only re-read the reports of earlier runs
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
    "c_spacy_logreg": PROJECT / "bench/nlu/config_spacy_logreg.yml",
    "d_whitespace_logreg": PROJECT / "bench/nlu/config_whitespace_logreg.yml",
}
FOLDS = 5
OUT = PROJECT / "var/bench-nlu"


def cross_validate(name: str, config: Path) -> float:
    """Runs Rasa's cross-validation for one pipeline; returns the seconds it took."""
    started = time.time()
    subprocess.run(
        [
            str(PROJECT / ".venv/bin/rasa"), "test", "nlu",
            "--nlu", "data/nlu", "--config", str(config),
            "--cross-validation", "--folds", str(FOLDS), "--out", str(OUT / name),
        ],
        cwd=PROJECT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.time() - started
    (OUT / name / "seconds.txt").write_text(f"{seconds:.0f}\n")
    return seconds


def _f1_by_entity(report: dict) -> dict:
    skip = ("micro avg", "macro avg", "weighted avg", "no_entity", "accuracy")
    return {
        k: round(v["f1-score"], 3)
        for k, v in report.items()
        if isinstance(v, dict) and "f1-score" in v and k not in skip
    }


def summarize(name: str) -> dict:
    """Reads the reports Rasa wrote for one pipeline."""
    out = OUT / name
    intents = json.loads((out / "intent_report.json").read_text())
    entities = {}
    for extractor in ("DIETClassifier", "RegexEntityExtractor"):
        path = out / f"{extractor}_report.json"
        if path.exists():
            report = json.loads(path.read_text())
            entities[extractor] = {
                "micro_f1": round(report.get("micro avg", {}).get("f1-score", 0.0), 4),
                "by_entity": _f1_by_entity(report),
            }
    chatter = intents.get("chatter", {})
    errors = json.loads((out / "intent_errors.json").read_text())
    as_incident = sum(
        1 for e in errors if e["intent"] == "chatter" and e["intent_prediction"]["name"] == "report_incident"
    )
    support = chatter.get("support", 0)
    seconds = out / "seconds.txt"
    return {
        "intent_macro_f1": round(intents["macro avg"]["f1-score"], 4),
        "intent_accuracy": round(intents.get("accuracy", 0), 4),
        "intent_f1": {
            k: round(v["f1-score"], 3)
            for k, v in intents.items()
            if isinstance(v, dict) and "f1-score" in v and "avg" not in k
        },
        "entities": entities,
        "chatter_as_incident": f"{as_incident}/{support}",
        "chatter_as_incident_pct": round(100 * as_incident / support, 2) if support else None,
        "seconds": int(float(seconds.read_text())) if seconds.exists() else None,
    }


def main() -> int:
    args = sys.argv[1:]
    summarize_only = "--summarize" in args
    names = [a for a in args if not a.startswith("--")] or list(CONFIGS)
    if not summarize_only:
        for name in names:
            cross_validate(name, CONFIGS[name])
    results = {
        name: summarize(name) for name in CONFIGS if (OUT / name / "intent_report.json").exists()
    }
    for name, result in results.items():
        print(name, json.dumps(result, ensure_ascii=False), flush=True)
    (PROJECT / "bench/nlu/results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
