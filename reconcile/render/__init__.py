"""Renderers: each writes a plan or an apply report to a stream it is given."""

from reconcile.render.text import render_plan, render_result, render_summary, summary_line

__all__ = ["render_plan", "render_result", "render_summary", "summary_line"]
