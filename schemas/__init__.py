"""The message contracts, JSON Schema 2020-12: one file per message and the policy file.

Installed, this folder is the package ``worker.schemas`` (pyproject.toml maps it); ``worker.contracts`` reads
the files with ``importlib.resources``. No code lives here.
"""
