"""A Kubernetes API server for tests: real HTTP, real Status bodies, controllers and a kubelet
that runs pod containers as local processes. `fixture.py` starts it; the kubernetes client talks
to it through a kubeconfig file, exactly as it would to a cluster."""
