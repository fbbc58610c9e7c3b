"""The engine. Must never import textual or rich (guarded by tests/unit/test_import_hygiene.py)."""
