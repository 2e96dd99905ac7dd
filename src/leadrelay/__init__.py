"""leadrelay: delivers leads to CRMs — judged, logged, retried, replayable."""

__version__ = "0.1.0"
