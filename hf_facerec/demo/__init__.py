"""The Gradio Space's logic, testable without a browser: :mod:`.core` (model loading, the tabs' verbs),
:mod:`.operating_points` (thresholds, and what is honest to show), :mod:`.uploads` (files users give),
:mod:`.dashboard` (the bias and Model tabs), :mod:`.examples` (synthetic example photos rendered at start-up).
``spaces/facerec-demo/app.py`` holds only the layout."""

from hf_facerec.demo.core import *  # noqa: F401,F403
from hf_facerec.demo.core import __all__ as _core_all
from hf_facerec.demo.operating_points import *  # noqa: F401,F403
from hf_facerec.demo.operating_points import __all__ as _points_all

__all__ = sorted(set(_core_all) | set(_points_all))
