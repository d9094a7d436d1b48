"""The cluster backend: the Kubernetes API, through the official client."""
