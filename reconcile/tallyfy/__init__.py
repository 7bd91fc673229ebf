"""Everything that talks to the Tallyfy API: the client, its response values, and state reads."""

from reconcile.tallyfy.client import RetryPolicy, TallyfyClient
from reconcile.tallyfy.observe import observe, reread

__all__ = ["RetryPolicy", "TallyfyClient", "observe", "reread"]
