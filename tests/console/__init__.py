"""The operator console (`leadline console`) in a real headless Chromium."""
