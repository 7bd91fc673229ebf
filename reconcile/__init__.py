"""reconcile: declare the desired state of Tallyfy process runs in TOML, then plan and apply it."""

__version__ = "0.1.0"
