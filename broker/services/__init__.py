"""Services: one module per verb family. Each function takes the runtime and plain arguments,
and commits its own writes together with the act's audit entry before it returns."""
