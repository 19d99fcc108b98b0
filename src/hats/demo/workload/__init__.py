"""The sample workload the demos run: ``get_keys.py``.

``get_keys.py`` is a stand-alone script (it needs only ``grpcio``), shipped as
package data so that an installed ``hats`` (a wheel, not the source tree) can
put it into a bundle: :data:`GET_KEYS_SCRIPT` is its path on disk.
"""

from pathlib import Path

#: The script's file name inside the bundle (``/app/get_keys.py``).
SCRIPT_NAME = "get_keys.py"
#: Where the script is on disk, wherever hats is installed.
GET_KEYS_SCRIPT = Path(__file__).resolve().parent / SCRIPT_NAME
