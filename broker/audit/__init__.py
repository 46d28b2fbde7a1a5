"""The audit log's storage: the tables, appender, writes, checkpoint signer and its
schedule, and reads behind the pure log in `broker.core` (`merkle`, `checkpoint`, `entry`,
`verify`).

`appender` holds the one `AuditLog` of a process; `pending`, `encoding`, `writes` and
`driver` are the steps of an append; `signer` and `schedule` make its checkpoints; `reads`,
`export` and `integrity` read, export and verify the stored log. How the log works is
described in docs/audit.md. This package root deliberately imports nothing, so that
importing one module never pulls in the others.
"""
