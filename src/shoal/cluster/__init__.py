"""Several hosts as one: what shoal keeps in the global store about the hosts of a cluster
(hosts.py), for the networks that span them (the overlay driver, issue 12). The store itself
is shoal.store.etcd; the address blocks hosts lease are shoal.ipam.blocks."""
