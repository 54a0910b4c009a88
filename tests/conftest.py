"""Cross-service tests run against a whole platform started once per session (lazily: only
when a test asks for `stack` or `gateway`), on ports and names apart from `make dev`."""

from shardz_devstack.testing import gateway, stack

__all__ = ["gateway", "stack"]
