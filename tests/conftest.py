import sys
from pathlib import Path

import pytest

# tests/reference.py holds the literal reference implementations the tests compare with.
sys.path.insert(0, str(Path(__file__).parent))
