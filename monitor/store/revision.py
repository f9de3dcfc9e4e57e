"""The schema revision this code expects (kept light: read-only commands compare it without SQLAlchemy).

The newest migration in monitor/store/migrations/versions; tests/store/test_schema.py keeps them in step.
"""

HEAD = "0005"
