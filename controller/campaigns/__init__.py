"""Campaigns: a matrix of runs described in a TOML file, planned, run, resumed.

``spec`` reads the file and expands the matrix into cells (one cell = one run: matrix coordinates
plus a repetition, with a deterministic id); ``plan`` says what is runnable on this host and how
long it should take; ``execute`` runs the cells in order, with cool-downs, progress and resume.
"""

from controller.campaigns.file import load_campaign_file
from controller.campaigns.spec import Campaign, Cell, Configuration

__all__ = ["Campaign", "Cell", "Configuration", "load_campaign_file"]
