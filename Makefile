# Everything sets itself up: a fresh machine needs only Python 3.11+, pip, gcc and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTO_SRC := $(wildcard proto/contactgraph/v1/*.proto)
DESCRIPTOR := proto/contactgraph_v1.binpb
DEMO_DIR := .data/demo
DATA ?= ../shared/data
NODE2VEC_VENV := .venv-node2vec
MIN_VENV := .venv-min
# What test-min runs: enough to touch every direct dependency (protobuf and
# grpc incl. health/reflection/status, numpy, scipy, faiss, scikit-learn,
# pyarrow, networkx, prometheus-client, tqdm, cryptography, hypothesis).
MIN_TESTS ?= tests/proto tests/graph tests/service/pipeline tests/service/safety/test_safety_rules.py \
	tests/service/cli/test_rebuild_cli.py tests/service/server/test_server_integration.py \
	tests/service/server/test_metrics.py tests/service/server/test_tls.py

.PHONY: install proto run test test-min lint typecheck fuzz bench eval node2vec-venv descriptor clean

install: $(BIN)/.installed

# The package's build step (setup.py) generates contactgraph.v1 from the
# .proto files; the editable install puts it beside them, so a .proto change
# reinstalls.
$(BIN)/.installed: pyproject.toml setup.py $(PROTO_SRC)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Regenerate the protobuf/gRPC code now, with the same build step and pinned
# grpcio-tools a wheel uses. Generated code is never edited by hand.
proto: $(BIN)/.installed
	$(BIN)/pip install --quiet --no-deps -e .

# The committed descriptor set is the API's compatibility baseline; update it
# only for deliberate, compatible changes (tests/proto/test_api_compat.py checks).
descriptor: install
	$(BIN)/python -m grpc_tools.protoc -I proto \
		--descriptor_set_out=$(DESCRIPTOR) $(PROTO_SRC)

run: install
	$(BIN)/contactgraph demo --out $(DEMO_DIR)
	$(BIN)/contactgraph serve --snapshot $(DEMO_DIR)/snapshot --port 50051

test: install
	$(BIN)/python -m pytest -q

# The stateful safety test with many more (and longer) sequences than `make test`
# runs (the "fuzz" hypothesis profile in tests/conftest.py; FUZZ_EXAMPLES=n to
# change its 1500 sequences); no per-test timeout.
fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -o timeout=0 --hypothesis-show-statistics \
		tests/service/safety/test_safety_stateful.py

# The lowest declared version of every direct dependency (constraints-min.txt)
# in a scratch venv, the package installed from its wheel, on MIN_TESTS.
test-min:
	rm -rf $(MIN_VENV) build
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/pip install --quiet --upgrade pip
	$(MIN_VENV)/bin/pip install --quiet -c constraints-min.txt '.[dev]'
	$(MIN_VENV)/bin/python -m pytest -q -p no:cacheprovider $(MIN_TESTS)

# No `ruff format --check`: the code predates the formatter (96 files would
# change) and is not reformatted wholesale.
lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python -m tests.bench.graph_bench
	$(BIN)/python -m tests.bench.durability_bench
	$(BIN)/python -m tests.bench.serving_bench
	$(BIN)/python -m tests.bench.retrieval_bench
	$(BIN)/python -m tests.bench.embedding_bench --venv $(NODE2VEC_VENV)
	$(BIN)/python -m tests.bench.rebuild_bench

# Offline evaluation on the temporal data sets in $(DATA) (not part of test),
# node2vec included when its venv can be made (else the eval notes the skip).
eval: install
	-$(MAKE) node2vec-venv
	$(BIN)/contactgraph eval --data $(DATA) --node2vec $(NODE2VEC_VENV) --report .data/eval-report

# pecanpy (node2vec baseline) in a venv of its own: its gensim needs numpy < 2.
node2vec-venv: install
	$(BIN)/python -m service.cli.eval.node2vec install --venv $(NODE2VEC_VENV) --python $(PYTHON)

clean:
	rm -rf $(VENV) $(NODE2VEC_VENV) $(MIN_VENV) .data build *.egg-info proto/contactgraph/v1/*_pb2*.py* \
		proto/contactgraph/v1/.generated
