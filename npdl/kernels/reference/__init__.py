"""Readable array-API versions of every kernel: the specification the compiled ones are tested against."""
