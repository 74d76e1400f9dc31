"""shoal-cni: shoal as a CNI plugin (spec 0.3.0 to 1.1.0), so that a CNI runtime (Podman,
containerd, Kubernetes) puts its containers on shoal's networks.

    errors.py    CniError and the spec's well-known error codes
    config.py    the network configuration a runtime sends on stdin, parsed and checked
    result.py    spec-shaped results (ADD, VERSION) for each version
    networks.py  which shoal network a CNI network is (made at the first ADD, or external)
    commands.py  ADD, DEL, CHECK, STATUS and GC, on shoal's Engine (its sandbox seam)
    versions.py  the spec versions spoken; VERSION's quick answer (no json import)
    agent.py     the process that serves ADD, DEL and CHECK with the modules imported once
    main.py      the executable: CNI_* variables and stdin in, JSON on stdout, exit code"""
