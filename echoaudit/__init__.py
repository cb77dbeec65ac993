"""EchoAudit: audit synthetic echocardiography videos for memorization, coverage and
temporal consistency (Dombrowski, Reynaud and Kainz, arXiv 2411.04956)."""

__version__ = "0.1.0"
