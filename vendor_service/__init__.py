"""vendor_service."""
