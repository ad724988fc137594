"""Verbosity levels: how much js_host reports on the console.

Each level includes the ones below it. Messages always go to the ``js_host``
loggers; ``settings.VERBOSITY`` decides which of them are shown on the console.
"""

from __future__ import annotations

#: No output.
SILENT = 0
#: Output when connections are opened.
CONNECT = 100
#: Output when managers and managed hosts are started.
PROCESS_START = 200
#: Output when connections are closed.
DISCONNECT = 300
#: Output when managers and managed hosts are stopped.
PROCESS_STOP = 400
#: Output when functions are called.
FUNCTION_CALL = 500
#: Output everything.
VERBOSE = 600
