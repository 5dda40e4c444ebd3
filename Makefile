# The README's commands. Every target builds on `install`, which is idempotent:
# it reinstalls only when pyproject.toml or the .proto files change.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTOS := $(shell find protos -name '*.proto')
DURATION ?= 60
USERS ?= 10
WORKERS ?= 1
P95_MS ?= 5000

.PHONY: install browser demo test bench lint loadtest clean

install: $(VENV)/.installed node/generated/.stamp

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Generated gRPC code lives in node/generated (git-ignored, never edited).
# The -I mapping makes the generated modules importable as node.generated.*.
node/generated/.stamp: $(PROTOS) $(VENV)/.installed
	rm -rf node/generated
	mkdir -p node/generated
	$(BIN)/python -m grpc_tools.protoc -Inode/generated=protos \
		--python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)
	find node/generated -type d -exec touch {}/__init__.py \;
	touch $@

demo: install
	$(BIN)/blindmatch demo

# The console's browser tests drive Debian's chromium (Playwright's own download is not
# needed): installed here when missing, with sudo unless make runs as root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing chromium for the console's browser tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq chromium >/dev/null; }

test: install browser
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m bench

loadtest: install
	DURATION=$(DURATION) USERS=$(USERS) WORKERS=$(WORKERS) P95_MS=$(P95_MS) \
		$(BIN)/python -m loadtests.run

lint: install
	$(BIN)/ruff check crypto node tests bench loadtests
	$(BIN)/ruff format --check crypto node tests bench loadtests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) node/generated
