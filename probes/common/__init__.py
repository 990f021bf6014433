"""Code shared by several probe kinds: network, certificates, libpq, Kubernetes client."""
