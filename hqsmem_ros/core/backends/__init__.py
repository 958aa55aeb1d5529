"""Base VOS models behind one protocol (``base.Backend``)."""
