"""Code the test groups share: the ``*_fixtures.py`` modules are fixture plugins
(registered once in tests/conftest.py, never imported by a test); the others are
plain helpers that tests import."""
