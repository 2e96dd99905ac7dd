"""The failure digest: every few hours, each account owner learns what failed and what to do.

:mod:`.windows` (which stretch of time a digest covers), :mod:`.content` (what it says,
read from the ledger, bounded), :mod:`.render` (subject, text and HTML),
:mod:`.smtp` (sending with the standard library, and how a send ended), :mod:`.book`
(claims in the ledger: one sender per account and window), :mod:`.service` (a run, send
now, preview, history), :mod:`.settings` and :mod:`.addresses` (values checked once).

The package's modules are imported where used, so that reading the settings does not
import the digest's machinery.
"""
