"""The shared fixtures live in tests/fixtures.py and the plain helpers in tests/helpers.py;
registering the fixtures here makes them available to every test directory."""

pytest_plugins = ["tests.fixtures"]
