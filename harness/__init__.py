"""Runs inside each image (or as a local subprocess): loads one framework, lazily, and runs."""
