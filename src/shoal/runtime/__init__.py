"""Container processes: starting them inside a sandbox's namespaces, entering those
namespaces for exec, watching and stopping them, and the supervisor of detached containers."""
