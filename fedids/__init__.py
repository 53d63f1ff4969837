"""fedids: privacy-preserving federated intrusion detection for Industrial IoT."""

__version__ = "0.1.0"
