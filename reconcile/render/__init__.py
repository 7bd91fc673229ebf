"""Renderers: each writes a plan or an apply report to a stream it is given."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconcile.render.json import render_plan_json, render_report_json
    from reconcile.render.markdown import render_apply_markdown, render_plan_markdown
    from reconcile.render.origin import Origin, ci_origin
    from reconcile.render.text import render_plan, render_result, render_summary, summary_line

# Loaded on first use: the command line imports render.progress at start-up, and `--version` and
# `validate` should not pay for the renderers (the JSON one brings the whole pipeline).
_HOMES = {
    "Origin": "origin",
    "ci_origin": "origin",
    "render_apply_markdown": "markdown",
    "render_plan": "text",
    "render_plan_json": "json",
    "render_plan_markdown": "markdown",
    "render_report_json": "json",
    "render_result": "text",
    "render_summary": "text",
    "summary_line": "text",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


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
