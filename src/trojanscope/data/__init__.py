"""vet: is this training data poisoned? Detectors score samples from a model's features."""
