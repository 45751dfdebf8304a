"""The test suite, one folder per area it guards (see docs/testing.md)."""
