"""Facebook Lead Ads: a source in front of the engine's intake.

A page connection (:mod:`.pages`) says which account and forms a page's leads go to;
the webhook (:mod:`.webhook`) verifies and stores each notification before it answers;
the Graph reads (:mod:`.reader`, :mod:`.graph`) turn them into leads of source
``facebook`` in the background. ``Leadrelay.facebook`` is the :class:`FacebookSource`.
"""

from .fields import DEFAULT_FIELD_MAP
from .graph import GraphSettings
from .pages import WEBHOOK_PATH
from .signature import HEADER as SIGNATURE_HEADER
from .signature import sign
from .source import FacebookSource
from .webhook import Receipt

__all__ = [
    "DEFAULT_FIELD_MAP",
    "SIGNATURE_HEADER",
    "WEBHOOK_PATH",
    "FacebookSource",
    "GraphSettings",
    "Receipt",
    "sign",
]
