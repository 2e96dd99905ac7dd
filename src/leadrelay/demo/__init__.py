"""The self-contained demo behind ``leadrelay demo``: local demo CRMs and the story."""

from .crms import DemoCrms
from .page import page_origins, set_up_page
from .story import (
    ACCEPTS,
    DEMO_LEADS,
    DEMO_RETRY,
    DOWN,
    ERROR_AT_200,
    DemoResult,
    DemoStory,
    Progress,
    demo_settings,
    run_demo,
)

__all__ = [
    "ACCEPTS",
    "DEMO_LEADS",
    "DEMO_RETRY",
    "DOWN",
    "ERROR_AT_200",
    "DemoCrms",
    "DemoResult",
    "DemoStory",
    "Progress",
    "demo_settings",
    "page_origins",
    "run_demo",
    "set_up_page",
]
