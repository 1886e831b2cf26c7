"""``python -m realtime_sync``: the ``realtime-sync`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
