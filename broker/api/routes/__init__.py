"""The routers, one per resource: parse, authorise, call one service function, map errors."""
