"""Every timing and size knob of Rollway in one place, with why it has the value it has.

Settings that users may change (`ROLLWAY_LEASE_SECONDS`, `ROLLWAY_SWEEP_SECONDS`, `ROLLWAY_EGRESS_DENY`) take
their defaults from here; the rest are fixed on purpose and named so a reader finds them.
"""

from __future__ import annotations

# How long a claimed task run may go without its worker's heartbeat before it counts as lost. Workers renew at
# a third of it, so a busy machine must stall for two renewals in a row before a healthy run is reclaimed.
LEASE_SECONDS = 60.0
# How often `rollway beat` runs the sweep: the longest a lost message, an expired lease or a due wait can
# go unnoticed.
SWEEP_SECONDS = 15.0
# A heartbeat stops renewing an attempt that has run this long: a wedged executor is then reclaimed like a
# dead worker instead of holding its task forever.
ATTEMPT_TIMEOUT_SECONDS = 15 * 60.0
# Redis hands an unacknowledged message to another consumer after this long. Waits longer than a sweep are
# kept in the database, so no message is held longer than a sweep interval plus a task's own run time.
VISIBILITY_TIMEOUT_SECONDS = 300
# A run whose attempts were lost with their worker this many times is failed: a task that kills every worker
# it runs on must not take the whole pool down one worker at a time.
MAX_LOSSES = 3
# How many rows one pass of the sweep takes of each kind; the next pass takes the rest.
SWEEP_BATCH = 500

# Database: connecting gives up after this (libpq `connect_timeout`), the server cancels a statement after
# this, and a connection held longer than its limit (a hung server, a black-holed network) is cut by the
# watchdog, so an API request answers 503 within seconds instead of hanging.
DB_CONNECT_TIMEOUT_SECONDS = 2
DB_STATEMENT_TIMEOUT_SECONDS = 15
DB_API_HOLD_SECONDS = 3.0
DB_WORKER_HOLD_SECONDS = 30.0
# Waiting for a free pooled connection gives up after this.
DB_POOL_TIMEOUT_SECONDS = 5
# A worker retries a database error with backoff this long before it puts the message back in its queue.
DB_RETRY_SECONDS = 120.0

# The API's `Retry-After` while the database or the broker cannot be reached.
RETRY_AFTER_SECONDS = 5

# REST and POLL tasks (workers/http.py). Each wait for a connection, for bytes to send or for bytes to arrive
# gives up after this; a server that answers slowly but steadily is cut by the deadline below instead.
HTTP_TIMEOUT_SECONDS = 30.0
# One request, its redirects and the reading of its answer end within this (checked between reads), so a server
# trickling a byte before each timeout cannot hold a worker until the attempt timeout.
HTTP_DEADLINE_SECONDS = 120.0
# How much of an answer's body a task keeps (bytes, after decompression). Reading stops there: a 300 MB answer
# costs a worker this much memory, not 300 MB, and the output says `responseTruncated: true`. A task output is
# stored in the database and bound into later tasks, so a megabyte is already generous.
HTTP_BODY_LIMIT_BYTES = 1_000_000
# A REST or POLL request follows at most this many redirects (each checked against the egress deny list).
HTTP_MAX_REDIRECTS = 10
# What REST and POLL tasks may not reach when `ROLLWAY_EGRESS_DENY` is not set: link-local addresses, where
# cloud metadata services hand out the machine's credentials (AWS, GCP, Azure at 169.254.169.254, the AWS IPv6
# endpoint, Alibaba's 100.100.100.200). Loopback and private ranges stay reachable: tasks call services beside
# Rollway (the demo and the tests call local servers); deny them by listing them.
EGRESS_DENY = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32")
# The largest request body the API takes (Flask's MAX_CONTENT_LENGTH), and so the most the HTTP server
# (waitress) buffers before the app sees a request: a larger one is answered 413 before it is read, token or not.
MAX_REQUEST_BYTES = 2_000_000

# Pipeline notifications (orchestrator/notices.py, workers/notifier.py). A notification that could not be sent is
# tried again after this, doubling each time up to the cap, and given up (FAILED) after this many attempts: a
# receiver down for about an hour still gets it, one gone for good stops costing a worker.
NOTIFY_RETRY_SECONDS = 30.0
NOTIFY_RETRY_MAX_SECONDS = 15 * 60.0
NOTIFY_MAX_ATTEMPTS = 6
# A worker that took a notification and died (or hangs) leaves it to the sweep after this long: longer than one
# webhook's whole deadline or one mail's timeouts, so a slow receiver is never sent the same message twice.
NOTIFY_CLAIM_SECONDS = HTTP_DEADLINE_SECONDS + 60.0
# One SMTP conversation's network waits (connect, each command).
SMTP_TIMEOUT_SECONDS = 30.0
# How deep Pipeline tasks may nest executions (a top-level execution's child is at depth 1): A -> B -> A would
# otherwise start executions for ever. Past it the Pipeline task fails, so its parent's rollback runs.
MAX_NESTING_DEPTH = 5
# Rollback you can count on (`readiness.py`): a release starts only if every endpoint its rollback pipelines name
# answered a probe with its credentials within this long. A minute is short enough that "it answered" still
# means something when the rollback is needed, and long enough that a sweep or two refreshes it in time.
PROBE_FRESH_SECONDS = 60.0
# The sweep probes again any such endpoint whose probe is older than this, so with a sweep every
# `SWEEP_SECONDS` a probe is refreshed before it goes stale.
PROBE_REFRESH_SECONDS = PROBE_FRESH_SECONDS / 2
# One probe (connect, send, read) gives up after this: a trigger that probes an endpoint inline, or a sweep
# probing several, must not hang on a cluster that black-holes its packets.
PROBE_TIMEOUT_SECONDS = 5.0
# How much of a probe's answer is read: `/version` is a few hundred bytes, and nothing of it is kept.
PROBE_BODY_LIMIT_BYTES = 16_000
# How many endpoints one sweep probes at most; the next pass takes the rest.
PROBE_BATCH = 20

# SSH tasks (workers/executors/ssh.py). Connecting, the key exchange and logging in each give up after this.
SSH_CONNECT_TIMEOUT_SECONDS = 15.0
# A script runs at most `timeout` seconds (this when the task gives none), and never past the attempt timeout,
# after which its heartbeat would stop and the run would count as lost while the script still ran.
SSH_TIMEOUT_SECONDS = 600.0
SSH_MAX_TIMEOUT_SECONDS = int(ATTEMPT_TIMEOUT_SECONDS - LEASE_SECONDS)
# How much of what a script prints the task keeps as `response` (the rest is read and dropped, and the output
# says `responseTruncated: true`), and how much of its `$SCRIPT_RESPONSE_FILE` is read.
SSH_RESPONSE_LIMIT_BYTES = HTTP_BODY_LIMIT_BYTES
SSH_RESPONSE_FILE_LIMIT_BYTES = 64_000
