"""The studio: a local web page for people in the loop — sample a batch with live previews, keep
the ones you like and re-sample the rest, draw a mask and inpaint, refine with a strength slider,
fill ``[MASK]`` spans of a text.

FastAPI + uvicorn serve one static page (plain HTML and a small script, no build step): the
server is a few JSON endpoints around one generation queue, testable with FastAPI's TestClient,
and pulls no UI framework (Gradio would bring ~100 packages and its own front-end build into a
workspace whose domain packages must stay free of web dependencies). See ``docs/studio.md``.
"""

from diffstudio.jobs import Job, JobQueue, QueueFull
from diffstudio.paths import Models, PathRefused, inside
from diffstudio.server import Limits, create_app

__all__ = [
    "Job",
    "JobQueue",
    "Limits",
    "Models",
    "PathRefused",
    "QueueFull",
    "create_app",
    "inside",
]
