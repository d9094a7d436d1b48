"""The local backend: rendered manifests run as processes on this machine."""
