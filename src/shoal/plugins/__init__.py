"""Front ends through which other container engines hand their containers' networking to
shoal: `cni` is a CNI plugin (`shoal-cni`) for Podman, containerd and Kubernetes, `docker`
serves libnetwork's remote network driver API to dockerd (`shoal plugin serve`). Like the CLI
they only call the Engine; all state stays in shoal's store."""
