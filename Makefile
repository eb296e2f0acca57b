# Two entry points: `make demo` (index + API + page) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test clean browser pacs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch and torchvision come from this machine's disk; install them first so no resolver pulls another build
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev,pacs,distributed]' torch==2.14.1 torchvision==0.29.1
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/cxr demo

# The browser test drives Debian's Chromium; install it where we can (root + apt), else that one test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "note: Chromium could not be installed; the browser test will skip"

# The PACS tests run against a real Orthanc with its DICOMweb plugin; installed the same way, else they skip.
pacs:
	@{ command -v Orthanc >/dev/null 2>&1 && ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so >/dev/null 2>&1 ; } || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null) ; } || \
	  echo "note: Orthanc could not be installed; the PACS tests will skip"

# lint-imports first: the package layers and the no-cycle contracts of pyproject.toml ([tool.importlinter]).
test: install browser pacs
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
