"""shoal as a Docker network plugin: libnetwork's remote driver API over a unix socket.

    server.py   HTTP/1.x over a unix socket (stdlib), one request per connection, JSON
    driver.py   the handlers: each API call mapped onto the Engine

With the socket at /run/docker/plugins/shoal.sock, dockerd knows the driver as `shoal`."""
