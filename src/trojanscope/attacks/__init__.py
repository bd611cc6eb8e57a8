"""The red team: known-bad cases for testing defences. Detectors never import this package."""
