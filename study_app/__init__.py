"""Flask app for online listening studies: participant sessions, admin, export.

Never imports torch or transformers: a web worker stays small and starts fast.
"""

from study_app.app import create_app

__all__ = ["create_app"]
