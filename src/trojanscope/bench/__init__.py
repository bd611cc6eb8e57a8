"""bench: how good are the defences, measured."""
