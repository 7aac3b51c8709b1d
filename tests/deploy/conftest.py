"""The metadata-writer venv (tools/setup_deploy_env.sh, run by tools/test.sh) for export tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def metadata_env():
    from kseg.deploy.metadata import MetadataError, writer_python

    try:
        return writer_python()
    except MetadataError as e:
        pytest.skip(str(e))
