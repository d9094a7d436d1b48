from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import start_mlflow


@pytest.fixture(scope="session")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` (sqlite backend, served artifacts) for the whole session."""
    service, url = start_mlflow(tmp_path_factory.mktemp("mlflow"))
    yield url
    service.stop()


@pytest.fixture()
def mlflow_client(mlflow_url: str):
    from mlflow import MlflowClient

    return MlflowClient(mlflow_url)
