"""The audit log: an RFC 9162 Merkle tree of canonical JSON entries with signed checkpoints.

The pure core lives in `merkle` (tree hashes, proofs, compact ranges), `checkpoint`
(C2SP signed notes, checkpoints and tlog-proof receipts), `entry` (the closed entry
shape and its RFC 8785 bytes) and `verify` (streaming verification of a log or export).
None of them imports the web framework, the database or the settings; storage and the
appender sit on top. This package root deliberately imports nothing, so that importing a
pure module never pulls in database code.
"""
