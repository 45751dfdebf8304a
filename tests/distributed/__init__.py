"""Two CPU processes under torchrun (gloo): the tests and their workers."""
