from tests.kube_api.fixture import kube_api, kube_api_factory

__all__ = ["kube_api", "kube_api_factory"]
