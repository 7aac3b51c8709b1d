"""Deployment bundles for mobile and NPU toolchains (``kseg export android``).

Imports nothing heavy at import time; see :mod:`kseg.deploy.bundle`.
"""

from kseg.deploy.bundle import BUNDLE_FORMAT, BundleExistsError, export_android, verify_manifest

__all__ = ["BUNDLE_FORMAT", "BundleExistsError", "export_android", "verify_manifest"]
