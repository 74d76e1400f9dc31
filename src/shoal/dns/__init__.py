"""The embedded resolver's parts: the name table, the wire format, the forwarder, the server."""
