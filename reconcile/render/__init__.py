"""Renderers: each writes a plan or an apply report to a stream it is given.

The renderers are imported on first use: reconcile.errors quotes the API through
reconcile.render.sanitize, and importing the renderers (which import the plan, the apply and so
the errors) at that point would be circular; a command that renders nothing does not load them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconcile.render.json import render_plan_json, render_report_json
    from reconcile.render.markdown import render_apply_markdown, render_plan_markdown
    from reconcile.render.origin import Origin, ci_origin
    from reconcile.render.text import render_plan, render_result, render_summary, summary_line

_HOMES = {
    "render_plan_json": "json",
    "render_report_json": "json",
    "render_apply_markdown": "markdown",
    "render_plan_markdown": "markdown",
    "Origin": "origin",
    "ci_origin": "origin",
    "render_plan": "text",
    "render_result": "text",
    "render_summary": "text",
    "summary_line": "text",
}

__all__ = [
    "Origin",
    "ci_origin",
    "render_apply_markdown",
    "render_plan",
    "render_plan_json",
    "render_plan_markdown",
    "render_report_json",
    "render_result",
    "render_summary",
    "summary_line",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
