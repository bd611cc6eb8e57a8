"""Provenance: sign a model file, a model folder or a data set, and verify that nothing changed
since, in the OpenSSF model signing format (a Sigstore bundle holding a DSSE envelope whose
payload is an in-toto statement listing every file's SHA-256). `manifest` and `bundle` need only
the standard library (scan uses them); `keys` and `signing` need the `sign` extra."""
