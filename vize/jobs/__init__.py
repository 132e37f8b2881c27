"""Background jobs: the ``jobs`` table is the source of truth; runners only deliver ids."""
