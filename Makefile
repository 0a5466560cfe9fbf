# Everything sets itself up: a fresh machine needs only Python 3.11+, pip, gcc and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTO_SRC := $(wildcard proto/contactgraph/v1/*.proto)
PROTO_STAMP := proto/contactgraph/v1/.generated
DESCRIPTOR := proto/contactgraph_v1.binpb
DEMO_DIR := .data/demo
DATA ?= ../shared/data
NODE2VEC_VENV := .venv-node2vec

.PHONY: install proto run test fuzz bench eval node2vec-venv descriptor clean

install: $(BIN)/.installed $(PROTO_STAMP)

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Generated code is never edited by hand: this target regenerates it.
proto: $(BIN)/.installed
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=proto --pyi_out=proto \
		--grpc_python_out=proto $(PROTO_SRC)
	touch $(PROTO_STAMP)

$(PROTO_STAMP): $(PROTO_SRC) $(BIN)/.installed
	$(MAKE) proto

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
	$(BIN)/contactgraph eval --data $(DATA) --node2vec $(NODE2VEC_VENV)

# pecanpy (node2vec baseline) in a venv of its own: its gensim needs numpy < 2.
node2vec-venv: install
	$(BIN)/python -m service.cli.eval.node2vec install --venv $(NODE2VEC_VENV) --python $(PYTHON)

clean:
	rm -rf $(VENV) $(NODE2VEC_VENV) .data proto/contactgraph/v1/*_pb2*.py* $(PROTO_STAMP)
