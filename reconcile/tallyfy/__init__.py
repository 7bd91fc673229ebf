"""Everything that talks to the Tallyfy API: the client, its response values, and state reads."""

from reconcile.tallyfy.client import RetryPolicy, TallyfyClient
from reconcile.tallyfy.observe import Fetch, observe, reread
from reconcile.tallyfy.runs import ObservedRun

__all__ = ["Fetch", "ObservedRun", "RetryPolicy", "TallyfyClient", "observe", "reread"]
