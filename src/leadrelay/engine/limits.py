"""How long one attempt may take, and why a claim's lease needs no renewal.

An attempt's **deadline** is its integration's ``connect_timeout + read_timeout``,
counted from the start of its first request: connecting, sending, waiting for the head
and reading the whole answer of every request of the attempt (a SOAP login, then the
create, then a second login and create after an expired session) all fit in it. The
transport enforces it for every connector (:mod:`.deadline`): each request's connect
and read timeouts are clipped to the time left, and every read off the socket first
lowers the socket's timeout to the time left, so a CRM that trickles its head or its
body one byte at a time is cut off at the deadline, a few milliseconds late at most.

Both timeouts are bounded (:data:`MAX_CONNECT_TIMEOUT`, :data:`MAX_READ_TIMEOUT`), so no
attempt can run past :data:`MAX_ATTEMPT_SECONDS`. That bound is what lets the lease of a
claim stay fixed instead of being renewed while an attempt is in flight: a batch starts
no attempt once half its lease is gone (``DeliveryRunner.run_batch``), so its last
attempt ends by ``lease / 2 + MAX_ATTEMPT_SECONDS``, and a lease of at least
:data:`MIN_LEASE_SECONDS` (``2 * MAX_ATTEMPT_SECONDS + LEASE_MARGIN``) leaves half the
margin to judge and record before the sweeper may take the claim back. Renewal would
need a heartbeat write per claim in flight, on the hot path, to cover a case the
deadline already rules out; a sender stalled anyway (a frozen process) is what fencing
is for.
"""

from __future__ import annotations

#: The longest ``connect_timeout`` an integration may declare (seconds).
MAX_CONNECT_TIMEOUT = 30.0
#: The longest ``read_timeout`` an integration may declare (seconds).
MAX_READ_TIMEOUT = 120.0
#: No attempt runs longer than this (plus a few milliseconds): the largest deadline.
MAX_ATTEMPT_SECONDS = MAX_CONNECT_TIMEOUT + MAX_READ_TIMEOUT
#: Room in a lease, beyond two of the longest attempts, to judge and record a batch.
LEASE_MARGIN = 30.0
#: The shortest ``LEADRELAY_LEASE_SECONDS`` accepted (see the module docstring).
MIN_LEASE_SECONDS = 2 * MAX_ATTEMPT_SECONDS + LEASE_MARGIN
#: The default lease: the minimum, rounded up to whole minutes.
DEFAULT_LEASE_SECONDS = 360.0
