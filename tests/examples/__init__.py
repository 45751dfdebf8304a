"""The example and benchmark scripts at their smallest settings, and the
README's code."""
