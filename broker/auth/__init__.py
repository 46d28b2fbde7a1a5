"""Authentication and authorisation: clients, access tokens, and the request's caller.

`tokens` is the one module that touches python-jose; `clients` registers,
revokes and authenticates clients; `deps` gives routes a `Caller` and role
checks. This package root imports nothing so that importing `tokens` alone
stays free of database code.
"""
