"""``python -m hf_facerec.cli``: the same as the ``hf-facerec`` command."""

import sys

from hf_facerec.cli import main

sys.exit(main())
