"""Worked examples of a user's own model and data, named by reference in a grid."""
