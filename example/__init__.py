"""The js-host example app (see wsgi.py)."""
