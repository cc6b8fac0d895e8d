# WhatsApp Helpdesk. `make run` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
RASA := $(VENV)/bin/rasa
SPACY_MODEL := build/spacy/es_lookup
MODEL := models/helpdesk.tar.gz
KNOWLEDGE_INDEX := build/knowledge/meta.json
# the clock-skew drills run workers on a shifted clock (tests/faults/test_scheduled_clock_skew.py)
LIBFAKETIME := /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
# promtool checks and unit-tests the alert rules (tests/deploy/prometheus/test_alerts.py)
PROMTOOL := /usr/bin/promtool
KNOWLEDGE_FILES := $(shell find knowledge -name '*.md' -o -name '*.py' 2>/dev/null | grep -v README) config/knowledge.yml helpdesk/text.py helpdesk/config/knowledge.py
TRAINING_FILES := domain.yml config.yml $(shell find data -name '*.yml' 2>/dev/null)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONPATH := $(CURDIR)
# RQ workers `make run` starts (Zoho allows 5 concurrent calls: keep it at 4 or fewer)
WORKERS ?= 2

.PHONY: help setup run shell rasa-shell interactive train validate test bench bench-channels bench-llm-fallback bench-nlu bench-retrieval bench-history bench-fsync knowledge nlu-sync migrate-trackers migrate-ledger zoho-check clean

help:
	@echo "make run       set up, train if needed, start the whole bot (Ctrl-C stops it)"
	@echo "make test      set up, train, run every test"
	@echo "make shell     talk to the running bot (after make run, in another terminal; REST_CHANNEL_ENABLED=true in .env)"
	@echo "make rasa-shell  rasa shell (second server on RASA_PORT+1) against the running action server"
	@echo "make interactive rasa interactive against the running action server"
	@echo "make train     train the model when data, domain or config changed"
	@echo "make validate  rasa data validate --fail-on-warnings"
	@echo "make bench     turn latency and throughput against stock rasa init"
	@echo "make bench-channels  WAHA webhook ack, turn latency, msg/s (zero lost) vs stock rasa init"
	@echo "make bench-llm-fallback  other conversations' turns and acks while a slow LLM answers fallbacks"
	@echo "make bench-nlu 5-fold cross-validation of the candidate NLU pipelines"
	@echo "make knowledge build the knowledge index (build/knowledge/) when articles or its code changed"
	@echo "make bench-retrieval  knowledge retrieval: recall and MRR on 82 questions, latency on 10,000 chunks"
	@echo "make bench-history  turn cost at 10, 1,000 and 10,000 past events, the tracker stores side by side"
	@echo "make bench-fsync  webhook ack and inbound accept with Redis appendfsync always vs everysec"
	@echo "make nlu-sync  regenerate NLU lookup/synonym files from config/"
	@echo "make migrate-ledger  bring the ledger's tables to the newest migration (make run does it first)"
	@echo "make zoho-check  match config/departments.yml and ZOHO_REF_FIELD to the Zoho Desk portal"
	@echo "make migrate-trackers  move conversations kept by Rasa's Redis tracker store into ours (also done on first read)"
	@echo "make clean     remove the venv, built artifacts and models (keeps var/)"

setup: $(VENV)/.installed $(SPACY_MODEL)/meta.json
	@scripts/ensure_redis.sh
	@mkdir -p var

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	@PYTHON=$$(scripts/find_python.sh) && \
	  { [ -x $(PY) ] || { echo "Creating $(VENV) with $$PYTHON"; "$$PYTHON" -m venv $(VENV); }; }
	@echo "Installing Python packages (a few minutes the first time)..."
	@$(PY) -m pip install -q --upgrade "pip<24" 2>&1 | grep -v "is ignored" || true
	@set -o pipefail; $(PY) -m pip install -q -r requirements-dev.txt -c constraints.txt 2>&1 \
	  | { grep -v -E "is ignored: it is neither|DEPRECATION: .* legacy 'setup.py install'" || true; }
	@touch $@

$(SPACY_MODEL)/meta.json: $(VENV)/.installed scripts/build_spacy.py
	@$(PY) scripts/build_spacy.py $(SPACY_MODEL) 2>&1 | grep -v -i -E "tensorflow|TF-TRT|oneDNN|cuda|rebuild TensorFlow" || true
	@test -f $@

nlu-sync: $(VENV)/.installed
	@$(PY) scripts/sync_nlu.py

migrate-trackers: setup
	@$(PY) -m helpdesk.trackers migrate

zoho-check: $(VENV)/.installed
	@$(PY) -m helpdesk.zoho.check

migrate-ledger: setup
	@$(PY) -m helpdesk.tickets.schema upgrade

$(MODEL): $(VENV)/.installed $(SPACY_MODEL)/meta.json $(TRAINING_FILES) config/stores.yml config/systems.yml
	@$(PY) scripts/sync_nlu.py
	$(RASA) train --fixed-model-name helpdesk --out models
	@touch $@

train: setup $(MODEL)

$(KNOWLEDGE_INDEX): $(VENV)/.installed $(SPACY_MODEL)/meta.json $(KNOWLEDGE_FILES)
	@$(PY) -m knowledge.build
	@touch $@

knowledge: setup $(KNOWLEDGE_INDEX)

validate: setup
	$(RASA) data validate --fail-on-warnings

run: setup $(MODEL) $(KNOWLEDGE_INDEX)
	@$(PY) -m helpdesk.launch banner
	@WORKERS=$(WORKERS) exec $(PY) -m helpdesk.launch supervise

shell: $(VENV)/.installed
	@$(PY) scripts/shell.py

rasa-shell: setup $(MODEL)
	@$(PY) -m helpdesk.launch rasa-shell

interactive: setup $(MODEL)
	@$(PY) -m helpdesk.launch interactive

test: setup $(MODEL) $(KNOWLEDGE_INDEX)
	@scripts/ensure_debian_package.sh faketime $(LIBFAKETIME)
	@scripts/ensure_debian_package.sh prometheus $(PROMTOOL)
	$(RASA) data validate --fail-on-warnings
	$(PY) scripts/run_tests.py
	$(RASA) test core --model $(MODEL) --stories tests/test_stories.yml \
	  --fail-on-prediction-errors --out var/test-results

bench: setup $(MODEL)
	$(PY) bench/bench_turns.py

bench-channels: setup $(MODEL)
	$(PY) bench/bench_channels.py

bench-llm-fallback: setup $(MODEL) $(KNOWLEDGE_INDEX)
	$(PY) bench/bench_llm_fallback.py

bench-nlu: setup
	$(PY) bench/bench_nlu.py

bench-retrieval: setup
	$(PY) bench/bench_retrieval.py

bench-history: setup $(MODEL)
	$(PY) bench/bench_history.py
	$(PY) bench/bench_history_server.py

bench-fsync: setup
	$(PY) bench/bench_fsync.py

clean:
	rm -rf $(VENV) build models .rasa var/test-results .pytest_cache
