"""The guard: framework-free middleware logic (header -> token -> decision -> ``ErrorResponse``)
shared by every adapter (``middleware``), and the health endpoints (``health``).

May import: ``core``, ``sources``, ``keys`` and the foundation modules.
"""
