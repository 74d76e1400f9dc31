"""Tiny servers the firewall tests run in containers and in the 'outside' namespace. Each
answers with the address of its peer, so a test sees what source address arrived."""

TCP = """
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('0.0.0.0', port)); s.listen(64)
    while True:
        c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()
ports = [int(p) for p in sys.argv[1:]]
for p in ports[1:]:
    threading.Thread(target=serve, args=(p,), daemon=True).start()
serve(ports[0])
"""

UDP = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(100); s.sendto(peer[0].encode(), peer)
"""
