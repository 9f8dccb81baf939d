"""Alembic migrations of the contact store; run them with :func:`ccserver.storage.upgrade`."""
