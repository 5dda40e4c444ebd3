"""rbcl, without the copy of libsodium its import leaves behind.

On import, rbcl writes its bundled libsodium to a new temporary file, loads it
from there and never removes it: 2.7 MB in the temp directory for every process
that imports it (every `blindmatch` command, every pool worker), for good. Once
loaded, the file is not needed (the library stays mapped), nor the copy of its
bytes the module keeps: both are removed here.
"""

from __future__ import annotations

import contextlib
import os
import sys

import rbcl

# rbcl.rbcl names its CDLL `_sodium` too: the module is found by its full name. Another rbcl
# version may leave no file.
with contextlib.suppress(OSError, AttributeError, KeyError):
    os.unlink(sys.modules["rbcl._sodium"].lib_path)
with contextlib.suppress(AttributeError, KeyError):  # its bytes, 2.7 MB kept in every process
    del sys.modules["rbcl._sodium"].sodium_bs

__all__ = ["rbcl"]
