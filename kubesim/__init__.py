"""kubesim: a Kubernetes API emulator speaking the real REST API over HTTP, with simulated controllers.

Python::

    with KubeSim(port=0, unpullable=["nginx:bad*"], ready_delay=0.3) as sim:
        client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=sim.url))

Command line: ``python -m kubesim [--host H] [--port N] [--unpullable IMAGE]... [--crashing IMAGE]...
[--ready-delay SECONDS] [--token TOKEN]``.

Admin routes on the same server: ``GET/POST /kubesim/images`` (``{"unpullable": [...], "crashing": [...]}``),
``GET/POST /kubesim/commands`` (``{"failing": [...], "variables": {"VERSION": "1.2"}}``: which images' Job commands
exit 1, and what the commands kubesim cannot run would have set) and ``GET/POST/DELETE /kubesim/faults``
(``{"status": 500, "count": 2, "retryAfter": 1}``).
"""

from kubesim.simulator import KubeSim
from kubesim.status import ApiError

__all__ = ["ApiError", "KubeSim"]
