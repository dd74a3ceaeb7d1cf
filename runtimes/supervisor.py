"""The in-sandbox supervisor (pid 1 of a replica): loads a script, keeps K workers.

`python -I -S supervisor.py --language python|javascript --source DIR [...]`,
with the control socket to the daemon on fd 3 (options and messages: the
protocol.py docstring). This file stays this short because a program's own
file is compiled at every start, which for a big one costs milliseconds of
every replica's first call; the code is in startup.py and arbiter.py, loaded
from their cached bytecode.
"""

import os
import sys


def main() -> None:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "startup.py")
    # importlib's machinery as the interpreter loaded it (importlib.util costs ms).
    external = sys.modules["_frozen_importlib_external"]
    spec = external.spec_from_file_location("_scriptd_startup", path)
    startup = sys.modules["_frozen_importlib"].module_from_spec(spec)
    sys.modules["_scriptd_startup"] = startup
    spec.loader.exec_module(startup)
    startup.main(sys.argv[1:])


if __name__ == "__main__":
    main()
