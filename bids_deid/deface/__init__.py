"""Template-based defacing: register a full-head template, zero the face, never resample.

Public API::

    from bids_deid.deface import deface_file, DefaceResult, load_template, demo_head
"""

from .pipeline import DefaceResult, deface_file
from .template import Template, demo_head, load_template

__all__ = ["DefaceResult", "Template", "deface_file", "demo_head", "load_template"]
