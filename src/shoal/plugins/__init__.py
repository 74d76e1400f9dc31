"""Adapters that let other engines (CNI runtimes, dockerd) drive shoal."""
