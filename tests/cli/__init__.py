"""Tests of the ``leadrelay`` command."""
