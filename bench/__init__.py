"""The benchmark: reconcile against the sandbox, served in its own process with injected latency.

Run it with `python -m bench` from the repository (see the README's "Performance" section).
"""
