"""The pure core: policy evaluation, transforms, identifiers, and the audit log's Merkle tree,
checkpoints, entry encoding and verification.

Nothing in this package imports the web framework, the database layer or the settings; the
services hand it plain values. `tests/unit/test_pure_core.py` holds the whole folder to that.
"""
