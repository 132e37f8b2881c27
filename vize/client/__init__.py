"""Python SDK for the Vize API."""
