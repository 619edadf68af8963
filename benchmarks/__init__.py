"""Speed measurements (not part of the test suite): run each file as a script."""
