# `make run`, `make test` and `make lint` install what they need first, so each works on a fresh clone.
.PHONY: install test lint run

install:
	bash scripts/install.sh

lint: install
	python3 -m ruff check js_host js_host_proxy tests bench example
	python3 -m ruff format --check js_host js_host_proxy tests bench example

run: install
	bash scripts/run.sh

# The lint first: the tests assume the structure it keeps.
test: lint
	npm test
	python3 -m pytest -n 3 --dist loadfile
