"""The parts of bench/compare.py: ``subjects`` starts what is measured (installing it
first), ``measure`` takes the figures into a ``results.Results``, ``report`` (and
``chart``) turn them into the table, docs/bench.md and the JSON file."""
