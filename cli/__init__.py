"""The praxis command line."""
